"""GitLabClient against the GitLab stand-in: real python-gitlab over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from scoping.gitlab_client import (
    GitLabClient,
    GitLabIssue,
    GitLabNote,
    GitLabRefused,
    GitLabUnavailable,
    GitLabUser,
    IssueHook,
    NoteHook,
    parse_hook_time,
)
from tests.standins.gitlab import GitLabStandIn

TOKEN = "glpat-test-token"
PROJECT = "group/sub/ps-plan"
PROJECT_ID = 4242
ISSUES = f"/api/v4/projects/{PROJECT_ID}/issues"
SCOPING = "Services Calculator"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def gitlab_stand_in() -> Iterator[GitLabStandIn]:
    with GitLabStandIn(token=TOKEN, project_path=PROJECT, project_id=PROJECT_ID) as server:
        yield server


def make_client(server: GitLabStandIn, **options: float) -> GitLabClient:
    settings = {"timeout": 2.0, "max_retries": 3, "backoff_base": 0.01, "backoff_cap": 0.05}
    settings.update(options)
    return GitLabClient(url=server.url, token=TOKEN, project=PROJECT, **settings)  # type: ignore[arg-type]


@pytest.fixture
def gitlab_client(gitlab_stand_in: GitLabStandIn) -> Iterator[GitLabClient]:
    with make_client(gitlab_stand_in) as made:
        yield made


def seed_scoping_issues(server: GitLabStandIn, count: int) -> None:
    for n in range(count):
        server.add_issue(
            title=f"Scoping {n}",
            labels=[SCOPING, "Open"],
            created_at=T0 + timedelta(hours=n),
            updated_at=T0 + timedelta(hours=count - n),
        )


# -- listing --------------------------------------------------------------------------------


def test_listing_250_issues_takes_exactly_three_requests(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 250)

    issues = list(gitlab_client.iter_issues(label=SCOPING))

    assert len(issues) == 250
    assert gitlab_client.request_count == 3
    assert gitlab_stand_in.count_requests() == 3
    assert gitlab_stand_in.count_requests("GET", ISSUES) == 3
    updated = [issue.updated_at for issue in issues]
    assert updated == sorted(updated)
    assert len({issue.iid for issue in issues}) == 250


def test_listing_asks_gitlab_for_all_states_oldest_update_first_100_per_page(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 1)

    list(gitlab_client.iter_issues(label=SCOPING))

    query = gitlab_stand_in.requests[0].query
    assert query == {
        "labels": SCOPING,
        "state": "all",
        "order_by": "updated_at",
        "sort": "asc",
        "per_page": "100",
    }


def test_listing_is_lazy_and_fetches_a_page_only_when_it_is_needed(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 150)

    issues = gitlab_client.iter_issues(label=SCOPING)
    assert gitlab_client.request_count == 0
    next(issues)
    assert gitlab_client.request_count == 1


def test_listing_keeps_only_issues_with_the_label_in_any_letter_case(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(title="scoping", labels=[SCOPING])
    gitlab_stand_in.add_issue(title="closed scoping", labels=[SCOPING], state="closed")
    gitlab_stand_in.add_issue(title="a bug", labels=["bug"])

    titles = {issue.title for issue in gitlab_client.iter_issues(label="services calculator")}

    assert titles == {"scoping", "closed scoping"}


def test_listing_updated_after_returns_issues_updated_at_or_after_that_time(gitlab_stand_in, gitlab_client):
    for hours in (1, 2, 3):
        gitlab_stand_in.add_issue(title=f"{hours}h", labels=[SCOPING], updated_at=T0 + timedelta(hours=hours))

    titles = [
        i.title for i in gitlab_client.iter_issues(label=SCOPING, updated_after=T0 + timedelta(hours=2))
    ]

    assert titles == ["2h", "3h"]


def test_listing_with_a_naive_updated_after_is_a_programming_error(gitlab_client):
    with pytest.raises(ValueError, match="timezone-aware"):
        list(gitlab_client.iter_issues(label=SCOPING, updated_after=datetime(2024, 1, 1)))


def test_an_issue_arrives_as_our_dataclass_with_aware_times(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_user("em.one", name="Em One")
    gitlab_stand_in.add_issue(
        title="Scoping ACME",
        description="Opportunity 0061234567890AB",
        labels=[SCOPING, "proposal::Closed_Won"],
        assignees=["em.one"],
        author="seller",
        state="closed",
        created_at=T0,
        updated_at=T0 + timedelta(days=3),
    )

    issue = gitlab_client.get_issue(1)

    assert isinstance(issue, GitLabIssue)
    assert issue.iid == 1
    assert issue.title == "Scoping ACME"
    assert issue.description == "Opportunity 0061234567890AB"
    assert issue.web_url == f"{gitlab_stand_in.url}/{PROJECT}/-/issues/1"
    assert issue.state == "closed"
    assert set(issue.labels) == {SCOPING, "proposal::Closed_Won"}
    assert issue.assignee_usernames == ("em.one",)
    assert issue.author_username == "seller"
    assert issue.created_at == T0
    assert issue.updated_at == T0 + timedelta(days=3)
    assert issue.closed_at == T0 + timedelta(days=3)
    assert issue.created_at.tzinfo is not None


# -- writes ---------------------------------------------------------------------------------


def test_update_sends_one_put_with_only_the_label_change(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_label("proposal::SOW_WIP")
    gitlab_stand_in.add_issue(labels=[SCOPING, "proposal::Strawman_WIP"])

    issue = gitlab_client.update_issue(
        1, add_labels=["proposal::SOW_WIP"], remove_labels=["proposal::Strawman_WIP"]
    )

    assert set(issue.labels) == {SCOPING, "proposal::SOW_WIP"}
    (put,) = gitlab_stand_in.requests
    assert put.method == "PUT"
    assert put.body == {
        "add_labels": "proposal::SOW_WIP",
        "remove_labels": "proposal::Strawman_WIP",
    }
    assert gitlab_stand_in.created_labels == []


def test_label_added_by_someone_else_meanwhile_survives_our_update(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_label("proposal::SOW_WIP")
    gitlab_stand_in.add_issue(labels=[SCOPING, "Open"])
    seen = gitlab_client.get_issue(1)
    gitlab_stand_in.set_labels(1, [*seen.labels, "EM_Status::ToDo"])

    issue = gitlab_client.update_issue(1, add_labels=["proposal::SOW_WIP"], remove_labels=["Open"])

    assert set(issue.labels) == {SCOPING, "EM_Status::ToDo", "proposal::SOW_WIP"}


def test_update_returns_gitlabs_answer_with_the_new_updated_at(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_label("EM_Status::Waiting")
    gitlab_stand_in.add_issue(labels=[SCOPING], updated_at=T0)

    issue = gitlab_client.update_issue(1, add_labels=["EM_Status::Waiting"])

    assert issue.updated_at > T0
    assert issue.updated_at == gitlab_client.get_issue(1).updated_at


def test_closing_sets_closed_at_and_reopening_clears_it(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])

    closed = gitlab_client.update_issue(1, state_event="close")
    reopened = gitlab_client.update_issue(1, state_event="reopen")

    assert (closed.state, closed.closed_at is not None) == ("closed", True)
    assert (reopened.state, reopened.closed_at) == ("opened", None)


def test_assignees_are_set_by_user_id(gitlab_stand_in, gitlab_client):
    em = gitlab_stand_in.add_user("em.two")
    gitlab_stand_in.add_issue(labels=[SCOPING])

    issue = gitlab_client.update_issue(1, assignee_ids=[em["id"]])

    assert issue.assignee_usernames == ("em.two",)
    assert gitlab_stand_in.requests[-1].body == {"assignee_ids": [em["id"]]}


def test_an_update_without_any_change_is_refused_before_anything_is_sent(gitlab_client):
    with pytest.raises(ValueError, match="at least one change"):
        gitlab_client.update_issue(1)
    with pytest.raises(ValueError, match="both added and removed"):
        gitlab_client.update_issue(1, add_labels=["Open"], remove_labels=["Open"])
    assert gitlab_client.request_count == 0


def test_project_label_names_lets_a_caller_avoid_creating_a_misspelt_label(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_label("proposal::Closed_Won")
    gitlab_stand_in.add_issue(labels=[SCOPING])

    names = gitlab_client.project_label_names()
    gitlab_client.update_issue(1, add_labels=["proposal::closed_won"])  # what the check prevents

    assert "proposal::closed_won" not in names
    assert gitlab_stand_in.created_labels == ["proposal::closed_won"]


def test_project_label_names_reads_every_page(gitlab_stand_in, gitlab_client):
    for n in range(150):
        gitlab_stand_in.add_label(f"label-{n:03}")

    names = gitlab_client.project_label_names()

    assert len(names) == 150
    assert gitlab_client.request_count == 2


def test_a_note_is_created_and_touches_its_issue(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING], updated_at=T0)

    note = gitlab_client.create_note(1, "Closed as lost: no activity for 2 months.")

    assert isinstance(note, GitLabNote)
    assert note.body == "Closed as lost: no activity for 2 months."
    assert note.created_at.tzinfo is not None
    assert [n["body"] for n in gitlab_stand_in.notes(1)] == [note.body]
    assert gitlab_client.get_issue(1).updated_at == note.created_at


# -- resilience -----------------------------------------------------------------------------


def test_rate_limited_request_waits_for_retry_after_then_succeeds(gitlab_stand_in):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.fail_next(429, retry_after=1)
    client = make_client(gitlab_stand_in, backoff_cap=5)

    started = time.monotonic()
    issue = client.get_issue(1)

    assert issue.iid == 1
    assert time.monotonic() - started >= 0.9
    assert client.request_count == 2


def test_a_very_long_retry_after_is_capped(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.fail_next(429, retry_after=3600)

    started = time.monotonic()
    gitlab_client.get_issue(1)

    assert time.monotonic() - started < 1


def test_rate_limiting_that_never_ends_raises_unavailable(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.fail_next(429, times=10, retry_after=0)

    with pytest.raises(GitLabUnavailable, match="rate-limiting"):
        gitlab_client.get_issue(1)
    assert gitlab_client.request_count == 4


def test_bad_gateway_twice_then_success_is_retried(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 3)
    gitlab_stand_in.fail_next(502, times=2)

    issues = list(gitlab_client.iter_issues(label=SCOPING))

    assert len(issues) == 3
    assert gitlab_client.request_count == 3


def test_a_dropped_connection_then_success_is_retried(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 3)
    gitlab_stand_in.drop_next()

    assert len(list(gitlab_client.iter_issues(label=SCOPING))) == 3
    assert gitlab_client.request_count == 2


def test_a_failure_on_a_later_page_is_retried_without_restarting_the_listing(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 150)
    issues = gitlab_client.iter_issues(label=SCOPING)
    next(issues)
    gitlab_stand_in.fail_next(500)

    assert len(list(issues)) == 149
    assert gitlab_client.request_count == 3


def test_a_comment_whose_connection_dropped_is_not_sent_twice(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.drop_next(method="POST")

    with pytest.raises(GitLabUnavailable, match="dropped the connection"):
        gitlab_client.create_note(1, "Hello")
    assert gitlab_client.request_count == 1


def test_a_comment_refused_with_503_is_sent_again(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.fail_next(503, method="POST", path=f"{ISSUES}/1/notes")

    gitlab_client.create_note(1, "Hello")

    assert [n["body"] for n in gitlab_stand_in.notes(1)] == ["Hello"]
    assert gitlab_client.request_count == 2


def test_gitlab_answering_503_every_time_raises_unavailable(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.fail_next(503, times=100)

    with pytest.raises(GitLabUnavailable, match=r"answered 503 \(4 attempts\)"):
        gitlab_client.get_issue(1)
    assert gitlab_stand_in.count_requests() == 4


def test_an_outage_during_a_listing_raises_unavailable_from_the_iterator(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 150)
    issues = gitlab_client.iter_issues(label=SCOPING)
    next(issues)
    gitlab_stand_in.fail_next(502, times=100)

    with pytest.raises(GitLabUnavailable, match="502"):
        list(issues)


def test_a_rejected_token_raises_unavailable_saying_so_without_retrying(gitlab_stand_in):
    client = make_client(gitlab_stand_in)
    client_with_bad_token = GitLabClient(url=gitlab_stand_in.url, token="wrong", project=PROJECT)

    with pytest.raises(GitLabUnavailable, match="rejected the token") as caught:
        client_with_bad_token.get_issue(1)

    assert "GITLAB_TOKEN" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert client_with_bad_token.request_count == 1
    assert client.request_count == 0


def test_an_unknown_issue_raises_refused_with_gitlabs_message(gitlab_client):
    with pytest.raises(GitLabRefused) as caught:
        gitlab_client.get_issue(999)

    assert caught.value.status == 404
    assert caught.value.message == "404 Not found"
    assert gitlab_client.request_count == 1


def test_an_unknown_project_raises_refused(gitlab_stand_in):
    client = GitLabClient(url=gitlab_stand_in.url, token=TOKEN, project="group/elsewhere")

    with pytest.raises(GitLabRefused, match="404 Project Not Found"):
        list(client.iter_issues(label=SCOPING))


def test_a_slow_gitlab_raises_unavailable_naming_the_timeout(gitlab_stand_in):
    gitlab_stand_in.latency = 0.4
    client = make_client(gitlab_stand_in, timeout=0.1, max_retries=1)

    with pytest.raises(GitLabUnavailable, match=r"did not answer within 0.1 s \(2 attempts\)"):
        client.get_issue(1)


def test_an_unreachable_gitlab_raises_unavailable(gitlab_stand_in):
    gitlab_stand_in.stop()
    client = make_client(gitlab_stand_in, max_retries=1)

    with pytest.raises(GitLabUnavailable, match="could not be reached"):
        client.get_issue(1)
    assert client.request_count == 2


# -- users ----------------------------------------------------------------------------------


@pytest.fixture
def people(gitlab_stand_in: GitLabStandIn) -> GitLabStandIn:
    gitlab_stand_in.add_user("jdoe", name="Jane Doe", public_email="jane.doe@example.com")
    gitlab_stand_in.add_user("jdoe2", name="Jane Doering")
    gitlab_stand_in.add_user("asmith", name="Alex Smith")
    gitlab_stand_in.add_user("asmith2", name="Alex Smith")
    gitlab_stand_in.add_user("hidden", name="Hidden Email")
    return gitlab_stand_in


def test_user_by_username_ignores_letter_case_and_includes_the_public_email(people, gitlab_client):
    user = gitlab_client.user_by_username("JDoe")

    assert user == GitLabUser(id=user.id, username="jdoe", name="Jane Doe", email="jane.doe@example.com")


def test_user_by_unknown_username_is_none(people, gitlab_client):
    assert gitlab_client.user_by_username("nobody") is None


def test_find_user_by_public_email(people, gitlab_client):
    user = gitlab_client.find_user(email="Jane.Doe@Example.com")

    assert user is not None
    assert user.username == "jdoe"


def test_find_user_by_exact_full_name_not_a_partial_match(people, gitlab_client):
    user = gitlab_client.find_user(name="jane doe")

    assert user is not None
    assert user.username == "jdoe"


def test_find_user_by_a_name_two_people_share_is_none(people, gitlab_client):
    assert gitlab_client.find_user(name="Alex Smith") is None


def test_find_user_falls_back_from_email_to_name(people, gitlab_client):
    user = gitlab_client.find_user(email="hidden@example.com", name="Hidden Email")

    assert user is not None
    assert (user.username, user.email) == ("hidden", "")


def test_find_user_with_nothing_matching_is_none(people, gitlab_client):
    assert gitlab_client.find_user(username="ghost", email="ghost@example.com", name="Ghost") is None


# -- settings and the stand-in itself -------------------------------------------------------


def test_client_from_settings_uses_the_gitlab_settings(gitlab_stand_in, settings):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    settings.GITLAB_URL, settings.GITLAB_TOKEN, settings.GITLAB_PROJECT = gitlab_stand_in.url, TOKEN, PROJECT
    settings.GITLAB_TIMEOUT = 3
    client = GitLabClient.from_settings()
    settings.GITLAB_TOKEN = ""
    with pytest.raises(GitLabUnavailable, match="GITLAB_TOKEN"):
        GitLabClient.from_settings()

    assert client.timeout == 3
    assert client.get_issue(1).iid == 1


def test_stand_in_pages_with_gitlab_headers_and_absolute_links(gitlab_stand_in):
    seed_scoping_issues(gitlab_stand_in, 5)

    response = requests.get(
        f"{gitlab_stand_in.url}/api/v4/projects/group%2Fsub%2Fps-plan/issues",
        params={"per_page": 2, "page": 2, "labels": SCOPING},
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )

    assert response.status_code == 200
    assert len(response.json()) == 2
    headers = response.headers
    assert (headers["X-Page"], headers["X-Per-Page"], headers["X-Total"]) == ("2", "2", "5")
    assert (headers["X-Next-Page"], headers["X-Prev-Page"], headers["X-Total-Pages"]) == ("3", "1", "3")
    assert set(response.links) == {"next", "prev", "first", "last"}
    assert response.links["next"]["url"].startswith(f"{gitlab_stand_in.url}/api/v4/projects/")
    assert "page=3" in response.links["next"]["url"]
    assert "page=3" in response.links["last"]["url"]
    assert gitlab_stand_in.errors == []


# -- additions for the mirror: quotas, the bot, notes, iids, webhook payloads -----------------


def test_an_exhausted_quota_announced_on_a_success_pauses_the_next_request(gitlab_stand_in):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    client = make_client(gitlab_stand_in, backoff_cap=0.5)  # the pause is capped like any wait
    gitlab_stand_in.announce_rate_limit(remaining=0, reset_in=1.0)

    client.get_issue(1)
    started = time.monotonic()
    client.get_issue(1)

    assert time.monotonic() - started >= 0.3
    assert client.request_count == 2


def test_a_quota_with_room_left_does_not_slow_anything_down(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.announce_rate_limit(remaining=10, reset_in=30)

    gitlab_client.get_issue(1)
    started = time.monotonic()
    gitlab_client.get_issue(1)

    assert time.monotonic() - started < 0.2


def test_current_user_is_the_account_behind_the_token(gitlab_stand_in, gitlab_client):
    assert gitlab_client.current_user().username == "psplan-bot"


def test_recent_notes_come_newest_first_with_their_authors(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    gitlab_stand_in.add_note(1, "first", author="jane", when=T0)
    gitlab_stand_in.add_note(1, "second", when=T0 + timedelta(minutes=1))

    notes = gitlab_client.recent_notes(1, limit=5)

    assert [(n.body, n.author_username, n.system) for n in notes] == [
        ("second", "psplan-bot", False),
        ("first", "jane", False),
    ]
    assert gitlab_stand_in.requests[-1].query["per_page"] == "5"


def test_issues_can_be_listed_by_iid_whatever_their_labels(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 3)
    gitlab_stand_in.set_labels(2, ["bug"])

    found = list(gitlab_client.iter_issues(label=None, iids=[2, 3]))

    assert sorted(issue.iid for issue in found) == [2, 3]
    assert "labels" not in gitlab_stand_in.requests[-1].query


def test_a_listing_can_be_ordered_by_creation(gitlab_stand_in, gitlab_client):
    seed_scoping_issues(gitlab_stand_in, 3)

    iids = [issue.iid for issue in gitlab_client.iter_issues(label=SCOPING, order_by="created_at")]

    assert iids == [1, 2, 3]
    with pytest.raises(ValueError, match="order_by"):
        next(gitlab_client.iter_issues(label=SCOPING, order_by="title"))


def test_an_issue_carries_its_assignee_ids(gitlab_stand_in, gitlab_client):
    em = gitlab_stand_in.add_user("em.three")
    gitlab_stand_in.add_issue(labels=[SCOPING], assignees=["em.three"])

    assert gitlab_client.get_issue(1).assignee_ids == (em["id"],)


def test_an_issue_hook_payload_reads_like_the_api_issue(gitlab_stand_in, gitlab_client):
    gitlab_stand_in.add_user("em.four")
    gitlab_stand_in.add_issue(
        labels=[SCOPING, "Open"], assignees=["em.four"], created_at=T0, updated_at=T0 + timedelta(hours=1)
    )

    hook = IssueHook.from_payload(gitlab_stand_in.issue_hook(1, user="em.four"))
    api = gitlab_client.get_issue(1)

    assert hook.actor_username == "em.four"
    assert (hook.project_id, hook.project_path) == (PROJECT_ID, PROJECT)
    for name in ("id", "iid", "title", "state", "labels", "assignee_usernames", "assignee_ids", "web_url"):
        assert getattr(hook.issue, name) == getattr(api, name), name
    assert hook.issue.updated_at == api.updated_at.replace(microsecond=0)


def test_a_note_hook_payload_names_the_issue_the_author_and_the_time(gitlab_stand_in):
    gitlab_stand_in.add_issue(labels=[SCOPING])
    note = gitlab_stand_in.add_note(1, "Any news?", author="jane", when=T0)

    hook = NoteHook.from_payload(gitlab_stand_in.note_hook(note))

    assert (hook.note_id, hook.issue_iid, hook.author_username, hook.system) == (note["id"], 1, "jane", False)
    assert hook.created_at == T0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 09:00:00 UTC", datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ("2024-03-01T09:00:00Z", datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ("2024-03-01T09:00:00.123Z", datetime(2024, 3, 1, 9, 0, 0, 123000, tzinfo=UTC)),
        ("2024-03-01 10:00:00 +0100", datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ("2024-03-01T10:00:00+01:00", datetime(2024, 3, 1, 9, tzinfo=UTC)),
    ],
)
def test_webhook_times_are_read_in_every_format_gitlab_sends(text, expected):
    assert parse_hook_time(text) == expected
