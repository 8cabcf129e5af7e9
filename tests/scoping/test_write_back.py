"""GitLab write-back: what EMs and rules want reaches GitLab once, as the smallest change against its labels
of the moment, in batched runs whose requests are counted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from opportunities.choices import Segment, SyncKind, SyncStatus
from opportunities.models import SyncRun
from psplan import queue
from psplan.queue import WriteStatus
from scoping import services
from scoping.choices import IssueState, Stage
from scoping.gitlab_sync import sync_issues
from scoping.models import GitLabWrite, ScopingIssue
from scoping.write_back import deliver_gitlab_writes, state_event
from tests.factories import EngagementManagerFactory
from tests.scoping.conftest import GITLAB_PROJECT_ID, SCOPING, recently, seed

pytestmark = pytest.mark.django_db
PROJECT = f"/api/v4/projects/{GITLAB_PROJECT_ID}"
ISSUES = f"{PROJECT}/issues"


@pytest.fixture
def mirrored(gitlab_on, gitlab_client):
    """One scoping issue in stage Strawman_WIP, last touched by a person 20 days ago, mirrored."""
    iid = seed(gitlab_on, 1, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])[0]
    sync_issues(full=True, client=gitlab_client)
    gitlab_on.reset_requests()
    return ScopingIssue.objects.get(iid=iid)


def deliver(client, **options) -> int:
    return deliver_gitlab_writes(client=client, **options)["delivered"]


def puts(server, iid: int) -> list:
    return [r for r in server.requests if r.method == "PUT" and r.path == f"{ISSUES}/{iid}"]


def comments(server, iid: int) -> list[str]:
    return [n["body"] for n in server.notes(iid) if not n["system"]]


def make_due() -> None:
    GitLabWrite.objects.filter(status=WriteStatus.PENDING).update(next_attempt_at=timezone.now())


def queue_rule_close(
    issue: ScopingIssue, note: str = "Closed as lost: no activity for 2 months."
) -> GitLabWrite:
    return GitLabWrite.objects.create(
        issue=issue,
        intent={"stage": "Closed_Lost", "close_qtr": "Q499", "state": "closed"},
        note=note,
        source="rule",
    )


def test_a_stage_move_reaches_gitlab_as_one_put_with_only_the_change(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)

    assert deliver(gitlab_client) == 1

    (put,) = puts(gitlab_on, mirrored.iid)
    assert put.body == {"add_labels": "proposal::SOW_WIP", "remove_labels": "proposal::Strawman_WIP"}
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])
    write.refresh_from_db()
    assert (write.status, write.attempts, write.last_error) == (WriteStatus.DELIVERED, 1, "")
    assert write.delivered_at is not None
    assert gitlab_on.created_labels == []


def test_the_local_row_ends_equal_to_gitlabs_answer(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.CLOSED_LOST, actor=None)

    deliver(gitlab_client)

    remote = gitlab_on.issue(mirrored.iid)
    mirrored.refresh_from_db()
    assert mirrored.labels == remote["labels"]
    assert (mirrored.state, mirrored.stage) == (IssueState.CLOSED, Stage.CLOSED_LOST)
    assert mirrored.updated_at == mirrored.own_write_updated_at
    assert mirrored.closed_at is not None
    assert remote["state"] == "closed"


def test_a_label_someone_added_on_gitlab_after_our_edit_survives(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "EM_Status::ToDo", "customer-x"])

    deliver(gitlab_client)

    expected = sorted([SCOPING, "proposal::SOW_WIP", "EM_Status::ToDo", "customer-x"])
    assert gitlab_on.issue(mirrored.iid)["labels"] == expected
    mirrored.refresh_from_db()
    assert mirrored.labels == expected
    assert mirrored.em_status == "ToDo"


def test_a_label_added_on_gitlab_between_our_read_and_our_put_survives(gitlab_on, gitlab_client, mirrored):
    services.set_issue_segment(issue=mirrored, segment=Segment.MM_EMEA, actor=None)
    gitlab_on.before_next(
        lambda: gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "urgent"]),
        method="PUT",
    )

    deliver(gitlab_client)

    expected = sorted([SCOPING, "proposal::Strawman_WIP", "urgent", "Segment::MM_EMEA"])
    assert gitlab_on.issue(mirrored.iid)["labels"] == expected
    mirrored.refresh_from_db()
    assert mirrored.labels == expected


def test_scoped_exclusivity_holds_against_the_labels_gitlab_has_now(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    # Meanwhile someone moved the card on GitLab's board (which does not enforce exclusivity).
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "proposal:approved"])

    deliver(gitlab_client)

    (put,) = puts(gitlab_on, mirrored.iid)
    assert set(put.body["remove_labels"].split(",")) == {"proposal::Strawman_WIP", "proposal:approved"}
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_write_already_on_gitlab_sends_nothing_more(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::SOW_WIP"])

    assert deliver(gitlab_client) == 1

    assert puts(gitlab_on, mirrored.iid) == []
    mirrored.refresh_from_db()
    assert mirrored.own_write_updated_at is None
    assert mirrored.last_activity_at == mirrored.updated_at  # it was a person's edit


def test_a_label_missing_from_the_project_fails_the_write_and_is_never_created(
    gitlab_on, gitlab_client, mirrored
):
    gitlab_on.remove_label("EM_Status::Waiting")
    write = services.set_issue_em_status(issue=mirrored, em_status="Waiting", actor=None)

    assert deliver_gitlab_writes(client=gitlab_client)["failed"] == 1

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert write.failed_at is not None
    assert write.last_error == (
        "Label 'EM_Status::Waiting' does not exist in the GitLab project; PS Plan creates only new close_qtr "
        "labels. Create it in GitLab, then make the change again."
    )
    assert gitlab_on.count_requests("PUT") == 0
    assert gitlab_on.created_labels == []
    mirrored.refresh_from_db()
    assert mirrored.labels == [SCOPING, "proposal::Strawman_WIP"]  # back to what GitLab has
    assert mirrored.em_status == ""
    run = SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX)
    assert (run.status, run.error) == (SyncStatus.FAILED, f"#{mirrored.iid}: {write.last_error}")


def test_a_missing_label_that_differs_only_in_case_is_named_in_the_error(gitlab_on, gitlab_client, mirrored):
    gitlab_on.remove_label("Segment::SMB")
    gitlab_on.add_label("segment::smb")
    write = services.set_issue_segment(issue=mirrored, segment=Segment.SMB, actor=None)

    deliver(gitlab_client)

    write.refresh_from_db()
    assert "'Segment::SMB' (GitLab has 'segment::smb') does not exist" in write.last_error


def test_the_close_qtr_label_of_a_quarter_the_project_lacks_is_created_canonically(
    gitlab_on, gitlab_client, mirrored
):
    queue_rule_close(mirrored)

    assert deliver(gitlab_client) == 1

    assert "close_qtr::Q499" in gitlab_on.label_names
    assert gitlab_on.created_labels == []  # made on purpose, not as a side effect of the PUT
    assert "close_qtr::Q499" in gitlab_on.issue(mirrored.iid)["labels"]


def test_a_close_qtr_label_another_run_created_first_counts_as_created(gitlab_on, gitlab_client, mirrored):
    queue_rule_close(mirrored)
    # Another worker creates the same new label between our label read and our create: GitLab says 409.
    gitlab_on.before_next(
        lambda: gitlab_on.add_label("close_qtr::Q499"), method="POST", path=f"{PROJECT}/labels"
    )

    assert deliver(gitlab_client) == 1

    assert "close_qtr::Q499" in gitlab_on.issue(mirrored.iid)["labels"]
    assert GitLabWrite.objects.get().last_error == ""


def test_several_writes_to_one_issue_go_in_one_put_with_the_latest_wish(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    services.set_issue_stage(issue=mirrored, stage=Stage.APPROVED, actor=None)
    services.set_issue_segment(issue=mirrored, segment=Segment.SMB, actor=None)

    assert deliver(gitlab_client) == 3

    (put,) = puts(gitlab_on, mirrored.iid)
    assert set(put.body["add_labels"].split(",")) == {"proposal::Approved", "Segment::SMB"}
    assert put.body["remove_labels"] == "proposal::Strawman_WIP"


def test_a_delivery_run_costs_one_read_of_the_issues_one_of_the_labels_and_a_put_and_note_each(
    gitlab_on, gitlab_client
):
    iids = seed(gitlab_on, 30, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True, client=gitlab_client)
    for issue in ScopingIssue.objects.filter(iid__in=iids):
        queue_rule_close(issue)
    gitlab_on.reset_requests()

    assert deliver(gitlab_client) == 30

    assert gitlab_on.count_requests("GET", f"{ISSUES}") == 1  # iids[] of all 30 in one list request
    assert gitlab_on.count_requests("GET", f"{PROJECT}/labels") == 1
    assert gitlab_on.count_requests("POST", f"{PROJECT}/labels") == 1  # close_qtr::Q499, once
    assert gitlab_on.count_requests("PUT") == 30
    assert gitlab_on.count_requests("POST", f"{ISSUES}/") == 30
    assert gitlab_on.request_count == 30 + 30 + 3
    run = SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX)
    assert run.counts == {"delivered": 30, "failed": 0, "retrying": 0, "requests": 63}
    assert (run.status, run.error) == (SyncStatus.SUCCEEDED, "")


def test_more_than_a_batch_reads_issues_a_hundred_at_a_time(gitlab_on, gitlab_client):
    iids = seed(gitlab_on, 150, labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True, client=gitlab_client)
    for issue in ScopingIssue.objects.filter(iid__in=iids):
        services.set_issue_em_status(issue=issue, em_status="ToDo", actor=None)
    gitlab_on.reset_requests()

    assert deliver(gitlab_client) == 150

    assert gitlab_on.count_requests("GET", f"{ISSUES}") == 2
    assert gitlab_on.count_requests("GET", f"{PROJECT}/labels") == 1  # once per run, not per batch
    assert SyncRun.objects.filter(kind=SyncKind.GITLAB_OUTBOX).count() == 1


def test_an_outage_then_recovery_delivers_the_write_exactly_once(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(503, times=1000)

    assert deliver(gitlab_client) == 0

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)
    assert "503" in write.last_error
    assert write.next_attempt_at > timezone.now() + timedelta(seconds=10)
    run = SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX)
    assert run.error == f"#{mirrored.iid}: {write.last_error} (attempt 1, retrying)"
    mirrored.refresh_from_db()
    assert mirrored.stage == Stage.SOW_WIP  # the edit stays visible while it waits

    gitlab_on.clear_faults()
    assert deliver(gitlab_client) == 0  # not due yet
    make_due()
    assert deliver(gitlab_client) == 1
    assert deliver(gitlab_client) == 0

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.DELIVERED, 2)
    assert len(puts(gitlab_on, mirrored.iid)) == 1
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_rate_limit_ends_the_run_at_once_and_the_writes_wait_as_long_as_gitlab_asked(gitlab_on, settings):
    settings.GITLAB_MAX_RETRIES = 0
    iids = seed(gitlab_on, 5, labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True)
    for issue in ScopingIssue.objects.filter(iid__in=iids):
        services.set_issue_em_status(issue=issue, em_status="ToDo", actor=None)
    gitlab_on.reset_requests()
    gitlab_on.fail_next(429, method="PUT", retry_after=120)

    counts = deliver_gitlab_writes()

    assert counts == {"delivered": 0, "failed": 0, "retrying": 5}
    assert gitlab_on.count_requests("PUT") == 1  # the worker is given back after the first 429
    waits = [w.next_attempt_at - timezone.now() for w in GitLabWrite.objects.all()]
    assert all(wait > timedelta(seconds=110) for wait in waits)
    assert {w.last_error for w in GitLabWrite.objects.all()} == {
        "GitLab is rate-limiting PS Plan (1 attempt)"
    }


def test_with_a_budget_transient_failures_are_waited_out_in_the_run(gitlab_on, settings):
    settings.GITLAB_MAX_RETRIES = 0
    iids = seed(gitlab_on, 4, labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True)
    for issue in ScopingIssue.objects.filter(iid__in=iids):
        queue_rule_close(issue)
    gitlab_on.fail_next(429, method="PUT", retry_after=1)
    gitlab_on.fail_next(502, times=2, method="POST", path=f"{ISSUES}/")

    counts = deliver_gitlab_writes(budget=30)

    assert counts["delivered"] == 4
    assert not GitLabWrite.objects.exclude(status=WriteStatus.DELIVERED).exists()
    assert all(len(comments(gitlab_on, iid)) == 1 for iid in iids)


def test_a_put_whose_answer_was_lost_is_applied_only_once(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.drop_next(method="PUT", after_processing=True)

    assert deliver(gitlab_client) == 1

    label_notes = [n for n in gitlab_on.notes(mirrored.iid) if n["system"] and "label" in n["body"]]
    assert len(label_notes) == 1
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_comment_whose_answer_was_lost_is_not_posted_again(gitlab_on, gitlab_client, mirrored):
    write = queue_rule_close(mirrored)
    gitlab_on.drop_next(method="POST", path=f"{ISSUES}/{mirrored.iid}/notes", after_processing=True)

    assert deliver(gitlab_client) == 0
    make_due()
    assert deliver(gitlab_client) == 1

    assert comments(gitlab_on, mirrored.iid) == [write.note]
    write.refresh_from_db()
    assert write.status == WriteStatus.DELIVERED
    assert write.note_id == gitlab_on.notes(mirrored.iid)[-1]["id"]
    assert gitlab_on.issue(mirrored.iid)["state"] == "closed"


def test_after_a_put_that_landed_and_a_comment_that_did_not_the_retry_sends_only_the_comment(
    gitlab_on, gitlab_client, mirrored
):
    before = mirrored.last_activity_at
    write = queue_rule_close(mirrored, note="Closed as lost: no activity.")
    gitlab_on.fail_next(503, times=100, method="POST", path=f"{ISSUES}/{mirrored.iid}/notes")

    assert deliver(gitlab_client) == 0  # the PUT went through, the comment did not
    gitlab_on.clear_faults()
    make_due()
    assert deliver(gitlab_client) == 1

    write.refresh_from_db()
    mirrored.refresh_from_db()
    assert len(puts(gitlab_on, mirrored.iid)) == 1
    assert comments(gitlab_on, mirrored.iid) == [write.note]
    assert mirrored.last_activity_at == before
    assert mirrored.own_write_updated_at == mirrored.updated_at


def test_closing_with_a_comment_is_not_activity_and_needs_no_read_after_the_comment(
    gitlab_on, gitlab_client, mirrored
):
    before = mirrored.last_activity_at
    queue_rule_close(mirrored, note="Closed as lost: no activity.")

    deliver(gitlab_client)
    assert gitlab_on.count_requests("GET", f"{ISSUES}/{mirrored.iid}") == 0
    sync_issues(client=gitlab_client)
    sync_issues(full=True, client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before
    assert mirrored.updated_at.isoformat(timespec="milliseconds")[:23] == gitlab_on.issue(mirrored.iid)[
        "updated_at"
    ].rstrip("Z")


def test_our_own_write_does_not_reset_activity_but_a_later_human_edit_does(
    gitlab_on, gitlab_client, mirrored
):
    before = mirrored.last_activity_at
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    deliver(gitlab_client)
    sync_issues(client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before

    gitlab_on.touch(mirrored.iid, when=timezone.now() + timedelta(seconds=5))
    sync_issues(client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == mirrored.updated_at > before


def test_a_human_edit_just_before_our_write_counts_as_activity(gitlab_on, gitlab_client, mirrored):
    services.set_issue_em_status(issue=mirrored, em_status="ToDo", actor=None)
    human = gitlab_on.edit_issue(mirrored.iid, description="New details", when=recently(minutes=2))

    deliver(gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at.isoformat(timespec="milliseconds")[:23] == human["updated_at"].rstrip(
        "Z"
    )
    assert mirrored.description == "New details"


def test_gitlab_refusing_a_write_fails_it_with_gitlabs_message(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(403, method="PUT", message="403 Forbidden - You are not allowed to edit this issue")

    assert deliver(gitlab_client) == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "You are not allowed to edit this issue" in write.last_error
    mirrored.refresh_from_db()
    assert mirrored.stage == Stage.STRAWMAN_WIP


def test_a_write_for_an_issue_deleted_on_gitlab_fails_and_marks_it_removed(
    gitlab_on, gitlab_client, mirrored
):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.delete_issue(mirrored.iid)

    deliver(gitlab_client)

    write.refresh_from_db()
    mirrored.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "no longer exists in GitLab" in write.last_error
    assert mirrored.removed_at is not None


def test_two_runs_never_claim_the_same_write(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    lease = timedelta(minutes=10)

    first = queue.claim(GitLabWrite, limit=10, lease=lease)
    second = queue.claim(GitLabWrite, limit=10, lease=lease)

    assert len(first) == 1
    assert second == []
    assert deliver(gitlab_client) == 0  # leased to the first run
    assert gitlab_on.request_count == 0


def test_a_later_write_never_overtakes_an_earlier_one_of_the_same_issue(gitlab_on, gitlab_client, mirrored):
    first = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    services.set_issue_stage(issue=mirrored, stage=Stage.APPROVED, actor=None)
    GitLabWrite.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert deliver(gitlab_client) == 0
    assert gitlab_on.request_count == 0

    make_due()
    assert deliver(gitlab_client) == 2
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::Approved"])


def test_assigning_an_engagement_manager_sends_their_gitlab_user(gitlab_on, gitlab_client, mirrored):
    user = gitlab_on.add_user("priya")
    em = EngagementManagerFactory(gitlab_username="priya", gitlab_user_id=user["id"])
    services.set_issue_engagement_manager(issue=mirrored, engagement_manager=em, actor=None)

    assert deliver(gitlab_client) == 1

    assert [r.body for r in puts(gitlab_on, mirrored.iid)] == [{"assignee_ids": [user["id"]]}]
    mirrored.refresh_from_db()
    assert (mirrored.assignee_usernames, mirrored.engagement_manager) == (["priya"], em)


def test_nothing_is_delivered_while_gitlab_is_not_configured(settings, mirrored):
    settings.GITLAB_ENABLED = False
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)

    assert deliver_gitlab_writes() == {}
    assert GitLabWrite.objects.get().status == WriteStatus.PENDING
    assert not SyncRun.objects.filter(kind=SyncKind.GITLAB_OUTBOX).exists()


def test_a_run_with_nothing_due_leaves_no_record_and_sends_nothing(gitlab_on, gitlab_client, mirrored):
    assert deliver_gitlab_writes(client=gitlab_client) == {}
    assert gitlab_on.request_count == 0
    assert not SyncRun.objects.filter(kind=SyncKind.GITLAB_OUTBOX).exists()


@pytest.mark.parametrize(
    ("wanted", "state", "event"),
    [
        ("closed", "opened", "close"),
        ("opened", "closed", "reopen"),
        ("closed", "closed", None),
        ("opened", "opened", None),
        (None, "opened", None),
        (None, "closed", None),
    ],
)
def test_the_state_is_sent_only_when_gitlab_does_not_have_it_already(wanted, state, event):
    assert state_event(wanted, state) == event


def queue_write(issue: ScopingIssue, intent: dict, note: str = "") -> GitLabWrite:
    return GitLabWrite.objects.create(issue=issue, intent=intent, note=note, source="page")


def test_an_issue_ps_plan_reopens_is_reopened_on_gitlab(gitlab_on, gitlab_client, mirrored):
    queue_write(mirrored, {"state": "closed"})
    deliver(gitlab_client)
    queue_write(mirrored, {"state": "opened"})

    assert deliver(gitlab_client) == 1

    assert [put.body for put in puts(gitlab_on, mirrored.iid)] == [
        {"state_event": "close"},
        {"state_event": "reopen"},
    ]
    assert gitlab_on.issue(mirrored.iid)["state"] == "opened"


def test_assigning_the_engagement_manager_gitlab_already_shows_sends_nothing(
    gitlab_on, gitlab_client, mirrored
):
    user = gitlab_on.add_user("priya")
    gitlab_on.edit_issue(mirrored.iid, assignees=["priya"], when=recently(days=19))
    queue_write(mirrored, {"assignee_ids": [user["id"]]})

    assert deliver(gitlab_client) == 1

    assert puts(gitlab_on, mirrored.iid) == []


def test_a_comment_alone_is_posted_without_a_put_and_is_not_activity(gitlab_on, gitlab_client, mirrored):
    before = mirrored.last_activity_at
    queue_write(mirrored, {}, note="The customer asked for a second estimate.")

    assert deliver(gitlab_client) == 1
    sync_issues(full=True, client=gitlab_client)

    assert puts(gitlab_on, mirrored.iid) == []
    assert comments(gitlab_on, mirrored.iid) == ["The customer asked for a second estimate."]
    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before


def test_an_earlier_ps_plan_comment_is_not_taken_for_the_one_being_retried(
    gitlab_on, gitlab_client, mirrored
):
    gitlab_on.add_note(mirrored.iid, "Closed as lost: no activity for 2 months.", when=recently(days=19))
    write = queue_rule_close(mirrored, note="Closed as won: the opportunity closed.")
    gitlab_on.fail_next(503, times=100, method="POST", path=f"{ISSUES}/{mirrored.iid}/notes")
    deliver(gitlab_client)
    gitlab_on.clear_faults()
    make_due()

    assert deliver(gitlab_client) == 1

    assert comments(gitlab_on, mirrored.iid) == ["Closed as lost: no activity for 2 months.", write.note]


def test_without_a_budget_each_write_is_tried_once_per_run(gitlab_on, mirrored, settings):
    settings.GITLAB_MAX_RETRIES = 2
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(503, method="PUT")

    assert deliver_gitlab_writes() == {"delivered": 0, "failed": 0, "retrying": 1}

    assert len(puts(gitlab_on, mirrored.iid)) == 1
    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)


def mirrored_issues(server, client, count: int) -> list[ScopingIssue]:
    iids = seed(server, count, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True, client=client)
    server.reset_requests()
    return list(ScopingIssue.objects.filter(iid__in=iids).order_by("iid"))


@pytest.mark.parametrize(
    ("failing", "tried", "delivered"),
    [
        ([0, 1, 2], 3, 0),  # three in a row: GitLab is in trouble, the other two wait untried
        ([0, 1, 3, 4], 5, 1),  # never three in a row: every write is tried
    ],
)
def test_three_writes_failing_in_a_row_end_the_run(gitlab_on, gitlab_client, failing, tried, delivered):
    issues = mirrored_issues(gitlab_on, gitlab_client, 5)
    for issue in issues:
        services.set_issue_em_status(issue=issue, em_status="ToDo", actor=None)
    for index in failing:
        gitlab_on.fail_next(503, times=100, method="PUT", path=f"{ISSUES}/{issues[index].iid}")

    counts = deliver_gitlab_writes()

    assert gitlab_on.count_requests("PUT") == tried
    assert counts == {"delivered": delivered, "failed": 0, "retrying": 5 - delivered}


def test_an_edit_conflict_is_tried_again_later_not_refused(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(409, method="PUT", message="409 Conflict - Resource lock")

    assert deliver_gitlab_writes(client=gitlab_client) == {"delivered": 0, "failed": 0, "retrying": 1}

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)
    assert "Resource lock" in write.last_error
    mirrored.refresh_from_db()
    assert mirrored.stage == Stage.SOW_WIP


def test_a_write_that_cannot_be_worked_out_is_kept_and_retried_with_its_error_named(
    gitlab_on, gitlab_client, mirrored
):
    write = queue_write(mirrored, {"segment": "Ent_LATAM"})

    assert deliver_gitlab_writes(client=gitlab_client) == {"delivered": 0, "failed": 0, "retrying": 1}

    write.refresh_from_db()
    assert write.status == WriteStatus.PENDING
    assert write.last_error == "ValueError: 'Ent_LATAM' is not a valid Segment"
    assert puts(gitlab_on, mirrored.iid) == []


def test_an_edit_reaches_gitlab_when_its_transaction_commits_in_one_run(
    gitlab_on, mirrored, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
        services.set_issue_segment(issue=mirrored, segment=Segment.SMB, actor=None)

    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP", "Segment::SMB"])
    assert SyncRun.objects.filter(kind=SyncKind.GITLAB_OUTBOX).count() == 1
    assert not GitLabWrite.objects.exclude(status=WriteStatus.DELIVERED).exists()
