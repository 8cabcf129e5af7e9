"""The GitLab outbox: edits reach GitLab exactly once, as a change against GitLab's labels of the moment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from opportunities.choices import Segment, SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping import services
from scoping.choices import IssueState, Stage, WriteStatus
from scoping.gitlab_sync import sync_issues
from scoping.models import GitLabWrite, ScopingIssue
from scoping.outbox import _claim, deliver_pending_writes
from tests.factories import EngagementManagerFactory
from tests.scoping.conftest import GITLAB_PROJECT_ID, SCOPING, recent_close_qtr_labels, recently, seed

pytestmark = pytest.mark.django_db
ISSUES = f"/api/v4/projects/{GITLAB_PROJECT_ID}/issues"


@pytest.fixture
def mirrored(gitlab_on, gitlab_client):
    """One scoping issue in stage Strawman_WIP, last touched by a person 20 days ago, mirrored."""
    iid = seed(gitlab_on, 1, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])[0]
    sync_issues(full=True, client=gitlab_client)
    gitlab_on.reset_requests()
    return ScopingIssue.objects.get(iid=iid)


def puts(server, iid: int) -> list:
    return [r for r in server.requests if r.method == "PUT" and r.path == f"{ISSUES}/{iid}"]


def make_due() -> None:
    GitLabWrite.objects.filter(status=WriteStatus.PENDING).update(next_attempt_at=timezone.now())


def test_a_stage_move_reaches_gitlab_as_one_put_with_only_the_change(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)

    assert deliver_pending_writes(client=gitlab_client) == 1

    (put,) = puts(gitlab_on, mirrored.iid)
    assert put.body == {"add_labels": "proposal::SOW_WIP", "remove_labels": "proposal::Strawman_WIP"}
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])
    write.refresh_from_db()
    assert (write.status, write.attempts, write.last_error) == (WriteStatus.DELIVERED, 1, "")
    assert gitlab_on.created_labels == []


def test_the_local_row_ends_equal_to_gitlabs_answer(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.CLOSED_LOST, actor=None)

    deliver_pending_writes(client=gitlab_client)

    remote = gitlab_on.issue(mirrored.iid)
    mirrored.refresh_from_db()
    write.refresh_from_db()
    assert mirrored.labels == remote["labels"]
    assert (mirrored.state, mirrored.stage) == (IssueState.CLOSED, Stage.CLOSED_LOST)
    assert mirrored.updated_at == mirrored.own_write_updated_at == write.response_updated_at
    assert mirrored.closed_at is not None
    assert remote["state"] == "closed"


def test_a_label_someone_added_on_gitlab_after_our_edit_survives(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "EM_Status::ToDo", "customer-x"])

    deliver_pending_writes(client=gitlab_client)

    expected = sorted([SCOPING, "proposal::SOW_WIP", "EM_Status::ToDo", "customer-x"])
    assert gitlab_on.issue(mirrored.iid)["labels"] == expected
    mirrored.refresh_from_db()
    assert mirrored.labels == expected
    assert mirrored.em_status == "ToDo"


def test_a_label_added_on_gitlab_between_our_read_and_our_write_survives(gitlab_on, gitlab_client, mirrored):
    services.set_issue_segment(issue=mirrored, segment=Segment.MM_EMEA, actor=None)
    gitlab_on.before_next(
        lambda: gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "urgent"]),
        method="PUT",
    )

    deliver_pending_writes(client=gitlab_client)

    expected = sorted([SCOPING, "proposal::Strawman_WIP", "urgent", "Segment::MM_EMEA"])
    assert gitlab_on.issue(mirrored.iid)["labels"] == expected
    mirrored.refresh_from_db()
    assert mirrored.labels == expected


def test_scoped_exclusivity_holds_against_the_labels_gitlab_has_now(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    # Meanwhile someone moved the card on GitLab's board (which does not enforce exclusivity).
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::Strawman_WIP", "proposal:approved"])

    deliver_pending_writes(client=gitlab_client)

    (put,) = puts(gitlab_on, mirrored.iid)
    assert set(put.body["remove_labels"].split(",")) == {"proposal::Strawman_WIP", "proposal:approved"}
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_write_already_on_gitlab_sends_nothing_more(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.set_labels(mirrored.iid, [SCOPING, "proposal::SOW_WIP"])

    assert deliver_pending_writes(client=gitlab_client) == 1

    assert puts(gitlab_on, mirrored.iid) == []
    mirrored.refresh_from_db()
    assert mirrored.own_write_updated_at is None
    assert mirrored.last_activity_at == mirrored.updated_at  # it was a person's edit


def test_a_label_missing_from_the_project_fails_the_write_and_is_never_created(
    gitlab_on, gitlab_client, mirrored
):
    gitlab_on.add_label("Urgent")
    write = GitLabWrite.objects.create(issue=mirrored, add_labels=["urgent", "EM_Status::Blocked"])
    ScopingIssue.objects.filter(pk=mirrored.pk).update(labels=[SCOPING, "urgent", "EM_Status::Blocked"])

    assert deliver_pending_writes(client=gitlab_client) == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "'urgent' (GitLab has 'Urgent'), 'EM_Status::Blocked' does not exist" in write.last_error
    assert "PS Plan creates only new close_qtr labels" in write.last_error
    assert gitlab_on.count_requests("PUT") == 0
    assert gitlab_on.created_labels == []
    mirrored.refresh_from_db()
    assert mirrored.labels == [SCOPING, "proposal::Strawman_WIP"]  # back to what GitLab has
    assert SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX).status == SyncStatus.FAILED


def test_the_close_qtr_label_of_a_quarter_the_project_lacks_is_created_canonically(
    gitlab_on, gitlab_client, mirrored
):
    GitLabWrite.objects.create(issue=mirrored, add_labels=["close_qtr::Q499"], state_event="close")

    assert deliver_pending_writes(client=gitlab_client) == 1

    assert "close_qtr::Q499" in gitlab_on.label_names
    assert gitlab_on.created_labels == []  # made on purpose, not as a side effect of the PUT
    assert "close_qtr::Q499" in gitlab_on.issue(mirrored.iid)["labels"]


def test_a_label_variant_in_a_write_is_sent_in_its_canonical_form(gitlab_on, gitlab_client, mirrored):
    GitLabWrite.objects.create(issue=mirrored, add_labels=["proposal::sow_wip"])

    assert deliver_pending_writes(client=gitlab_client) == 1

    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])
    assert gitlab_on.created_labels == []


def test_the_project_labels_are_read_once_per_delivery_run(gitlab_on, gitlab_client):
    iids = seed(gitlab_on, 3)
    sync_issues(full=True, client=gitlab_client)
    for issue in ScopingIssue.objects.filter(iid__in=iids):
        services.set_issue_em_status(issue=issue, em_status="Waiting", actor=None)
    gitlab_on.reset_requests()

    assert deliver_pending_writes(client=gitlab_client) == 3

    assert gitlab_on.count_requests("GET", f"/api/v4/projects/{GITLAB_PROJECT_ID}/labels") == 1


def test_an_outage_then_recovery_delivers_the_write_exactly_once(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(503, times=1000)

    assert deliver_pending_writes(client=gitlab_client) == 0

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)
    assert "503" in write.last_error
    assert write.next_attempt_at > timezone.now() + timedelta(seconds=10)
    assert SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX).status == SyncStatus.FAILED
    mirrored.refresh_from_db()
    assert mirrored.stage == Stage.SOW_WIP  # the edit stays visible while it waits

    gitlab_on.clear_faults()
    assert deliver_pending_writes(client=gitlab_client) == 0  # not due yet
    make_due()
    assert deliver_pending_writes(client=gitlab_client) == 1
    assert deliver_pending_writes(client=gitlab_client) == 0

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.DELIVERED, 2)
    assert len([r for r in puts(gitlab_on, mirrored.iid) if r.body]) == 1
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_put_whose_answer_was_lost_is_applied_only_once(gitlab_on, gitlab_client, mirrored):
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.drop_next(method="PUT", after_processing=True)

    assert deliver_pending_writes(client=gitlab_client) == 1

    label_notes = [n for n in gitlab_on.notes(mirrored.iid) if n["system"] and "label" in n["body"]]
    assert len(label_notes) == 1
    assert gitlab_on.issue(mirrored.iid)["labels"] == sorted([SCOPING, "proposal::SOW_WIP"])


def test_a_comment_whose_answer_was_lost_is_not_posted_again(gitlab_on, gitlab_client, mirrored):
    write = GitLabWrite.objects.create(
        issue=mirrored,
        add_labels=["proposal::Closed_Lost", recent_close_qtr_labels()[0]],
        remove_labels=["proposal::Strawman_WIP"],
        state_event="close",
        note="Closed as lost: no activity for 2 months.",
    )
    gitlab_on.drop_next(method="POST", after_processing=True)

    assert deliver_pending_writes(client=gitlab_client) == 0
    make_due()
    assert deliver_pending_writes(client=gitlab_client) == 1

    comments = [n for n in gitlab_on.notes(mirrored.iid) if not n["system"]]
    assert [n["body"] for n in comments] == ["Closed as lost: no activity for 2 months."]
    write.refresh_from_db()
    assert (write.status, write.note_id) == (WriteStatus.DELIVERED, comments[0]["id"])
    assert gitlab_on.issue(mirrored.iid)["state"] == "closed"


def test_a_retry_after_a_partly_delivered_write_does_not_count_the_first_attempt_as_activity(
    gitlab_on, gitlab_client, mirrored
):
    before = mirrored.last_activity_at
    write = GitLabWrite.objects.create(
        issue=mirrored,
        add_labels=["proposal::Closed_Lost"],
        remove_labels=["proposal::Strawman_WIP"],
        state_event="close",
        note="Closed as lost: no activity.",
    )
    gitlab_on.fail_next(503, times=100, method="POST")

    assert deliver_pending_writes(client=gitlab_client) == 0  # the PUT went through, the comment did not
    gitlab_on.clear_faults()
    make_due()
    assert deliver_pending_writes(client=gitlab_client) == 1

    write.refresh_from_db()
    mirrored.refresh_from_db()
    assert len(puts(gitlab_on, mirrored.iid)) == 1
    assert [n["body"] for n in gitlab_on.notes(mirrored.iid) if not n["system"]] == [write.note]
    assert mirrored.last_activity_at == before
    assert mirrored.own_write_updated_at == mirrored.updated_at


def test_closing_with_a_comment_is_not_activity(gitlab_on, gitlab_client, mirrored):
    before = mirrored.last_activity_at
    GitLabWrite.objects.create(
        issue=mirrored,
        add_labels=["proposal::Closed_Lost"],
        remove_labels=["proposal::Strawman_WIP"],
        state_event="close",
        note="Closed as lost: no activity.",
    )

    deliver_pending_writes(client=gitlab_client)
    sync_issues(client=gitlab_client)
    sync_issues(full=True, client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before
    assert mirrored.own_write_updated_at == mirrored.updated_at
    assert mirrored.updated_at.isoformat(timespec="milliseconds")[:23] == gitlab_on.issue(mirrored.iid)[
        "updated_at"
    ].rstrip("Z")


def test_our_own_write_does_not_reset_activity_but_a_later_human_edit_does(
    gitlab_on, gitlab_client, mirrored
):
    before = mirrored.last_activity_at
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    deliver_pending_writes(client=gitlab_client)
    sync_issues(client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before

    gitlab_on.touch(mirrored.iid, when=timezone.now() + timedelta(seconds=1))
    sync_issues(client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == mirrored.updated_at > before


def test_a_human_edit_just_before_our_write_counts_as_activity(gitlab_on, gitlab_client, mirrored):
    services.set_issue_em_status(issue=mirrored, em_status="ToDo", actor=None)
    human = gitlab_on.edit_issue(mirrored.iid, description="New details", when=recently(minutes=2))

    deliver_pending_writes(client=gitlab_client)

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at.isoformat(timespec="milliseconds")[:23] == human["updated_at"].rstrip(
        "Z"
    )
    assert mirrored.description == "New details"


def test_gitlab_refusing_a_write_fails_it_with_gitlabs_message(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(403, method="PUT", message="403 Forbidden - You are not allowed to edit this issue")

    assert deliver_pending_writes(client=gitlab_client) == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "You are not allowed to edit this issue" in write.last_error
    mirrored.refresh_from_db()
    assert mirrored.stage == Stage.STRAWMAN_WIP


def test_a_write_for_an_issue_deleted_on_gitlab_fails_and_marks_it_removed(
    gitlab_on, gitlab_client, mirrored
):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(404, method="GET", path=f"{ISSUES}/{mirrored.iid}")

    deliver_pending_writes(client=gitlab_client)

    write.refresh_from_db()
    mirrored.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "404" in write.last_error
    assert mirrored.removed_at is not None


def test_two_workers_never_claim_the_same_write(gitlab_on, gitlab_client, mirrored):
    write = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)

    first, second = _claim(write.pk), _claim(write.pk)

    assert first is not None
    assert second is None
    assert deliver_pending_writes(client=gitlab_client) == 0  # leased to the first worker
    assert gitlab_on.request_count == 0


def test_writes_to_one_issue_wait_for_the_earlier_one(gitlab_on, gitlab_client, mirrored):
    first = services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)
    second = services.set_issue_stage(issue=mirrored, stage=Stage.APPROVED, actor=None)
    GitLabWrite.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert deliver_pending_writes(client=gitlab_client) == 0
    assert gitlab_on.request_count == 0

    make_due()
    assert deliver_pending_writes(client=gitlab_client) == 2
    bodies = [r.body["add_labels"] for r in puts(gitlab_on, mirrored.iid)]
    assert bodies == ["proposal::SOW_WIP", "proposal::Approved"]
    assert {first.pk, second.pk} == set(
        GitLabWrite.objects.filter(status="delivered").values_list("pk", flat=True)
    )


def test_assigning_an_engagement_manager_sends_their_gitlab_user_once(gitlab_on, gitlab_client, mirrored):
    user = gitlab_on.add_user("priya")
    em = EngagementManagerFactory(gitlab_username="priya", gitlab_user_id=user["id"])
    services.set_issue_engagement_manager(issue=mirrored, engagement_manager=em, actor=None)
    services.set_issue_engagement_manager(issue=mirrored, engagement_manager=None, actor=None)
    services.set_issue_engagement_manager(issue=mirrored, engagement_manager=em, actor=None)

    assert deliver_pending_writes(client=gitlab_client) == 3

    assert [r.body for r in puts(gitlab_on, mirrored.iid)] == [
        {"assignee_ids": [user["id"]]},
        {"assignee_ids": []},
        {"assignee_ids": [user["id"]]},
    ]
    mirrored.refresh_from_db()
    assert (mirrored.assignee_usernames, mirrored.engagement_manager) == (["priya"], em)


def test_nothing_is_delivered_while_gitlab_is_not_configured(settings, mirrored):
    settings.GITLAB_ENABLED = False
    services.set_issue_stage(issue=mirrored, stage=Stage.SOW_WIP, actor=None)

    assert deliver_pending_writes() == 0
    assert GitLabWrite.objects.get().status == WriteStatus.PENDING
