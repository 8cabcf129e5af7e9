"""Full and incremental syncs against the GitLab stand-in, through the real python-gitlab client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping.choices import IssueState, ProblemKind, Stage
from scoping.gitlab_client import GitLabUnavailable
from scoping.gitlab_sync import incremental_start, sync_issues
from scoping.models import DataQualityProblem, GitLabWrite, ScopingIssue
from tests.scoping.conftest import GITLAB_PROJECT_ID, SCOPING, recently, seed

pytestmark = pytest.mark.django_db
ISSUES = f"/api/v4/projects/{GITLAB_PROJECT_ID}/issues"


def writes_in(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def data_writes_in(queries) -> list[str]:
    """Writes to anything but the run's own record."""
    return [sql for sql in writes_in(queries) if "opportunities_syncrun" not in sql]


def test_a_full_sync_mirrors_every_scoping_issue_over_three_pages(gitlab_on, gitlab_client):
    seed(gitlab_on, 240)
    seed(gitlab_on, 10, state="closed", labels=[SCOPING, "proposal::Closed_Won", "close_qtr::Q325"])
    gitlab_on.add_issue(title="A bug", labels=["bug"])

    run = sync_issues(full=True, client=gitlab_client)

    assert (run.kind, run.status) == (SyncKind.GITLAB_FULL, SyncStatus.SUCCEEDED)
    assert ScopingIssue.objects.count() == 250
    assert ScopingIssue.objects.filter(state=IssueState.CLOSED, stage=Stage.CLOSED_WON).count() == 10
    assert gitlab_on.count_requests("GET", ISSUES) == 3
    assert run.counts["created"] == 250
    assert run.counts["requests"] == 3
    first = gitlab_on.requests[0].query
    assert (first["state"], first["per_page"], first["labels"]) == ("all", "100", SCOPING)


def test_a_mirrored_issue_equals_what_gitlab_has(gitlab_on, gitlab_client):
    gitlab_on.add_user("em.one")
    data = gitlab_on.add_issue(
        title="Scoping ACME",
        description="Opportunity 0061234567890AB",
        labels=[SCOPING, "proposal::SOW_WIP", "Segment::SMB", "EM_Status::ToDo", "Public Sector US"],
        assignees=["em.one"],
        author="seller",
        updated_at=recently(days=1),
    )

    sync_issues(full=True, client=gitlab_client)

    issue = ScopingIssue.objects.get()
    assert (issue.gitlab_id, issue.iid, issue.title, issue.web_url) == (
        data["id"],
        data["iid"],
        "Scoping ACME",
        data["web_url"],
    )
    assert issue.labels == data["labels"]
    assert (issue.assignee_usernames, issue.author_username) == (["em.one"], "seller")
    assert (issue.stage, issue.segment, issue.em_status, issue.public_sector) == (
        Stage.SOW_WIP,
        "SMB",
        "ToDo",
        True,
    )
    assert issue.updated_at == issue.last_activity_at
    assert issue.updated_at.isoformat(timespec="milliseconds").startswith(data["updated_at"][:23])


def test_a_second_sync_of_unchanged_issues_writes_nothing(gitlab_on, gitlab_client):
    seed(gitlab_on, 120)
    sync_issues(full=True, client=gitlab_client)

    with CaptureQueriesContext(connection) as queries:
        full = sync_issues(full=True, client=gitlab_client)
        incremental = sync_issues(client=gitlab_client)

    assert data_writes_in(queries) == []
    assert full.counts["unchanged"] == 120
    assert incremental.counts["created"] + incremental.counts["updated"] == 0
    assert gitlab_on.count_requests("PUT") + gitlab_on.count_requests("POST") == 0


def test_an_incremental_sync_asks_only_for_what_changed_since_the_high_water_mark(
    gitlab_on, gitlab_client, settings
):
    settings.GITLAB_SYNC_OVERLAP = 30
    iids = seed(gitlab_on, 250, start=recently(days=10))
    first = sync_issues(full=True, client=gitlab_client)
    for iid in iids[:3]:
        gitlab_on.edit_issue(iid, title=f"Renamed {iid}", when=recently(minutes=5))
    gitlab_on.reset_requests()

    run = sync_issues(client=gitlab_client)

    assert run.kind == SyncKind.GITLAB_INCREMENTAL
    assert gitlab_on.count_requests() == 1
    (request,) = gitlab_on.requests
    assert request.query["updated_after"].startswith(
        (first.high_water_mark - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert (run.counts["updated"], run.counts["unchanged"]) == (3, 1)  # the last one is in the overlap
    assert set(ScopingIssue.objects.filter(title__startswith="Renamed").values_list("iid", flat=True)) == set(
        iids[:3]
    )
    assert run.high_water_mark > first.high_water_mark


def test_an_incremental_sync_without_an_earlier_success_is_a_full_one(gitlab_on, gitlab_client):
    seed(gitlab_on, 3)
    SyncRun.objects.create(kind=SyncKind.GITLAB_FULL, status=SyncStatus.FAILED)

    run = sync_issues(client=gitlab_client)

    assert run.kind == SyncKind.GITLAB_FULL
    assert "updated_after" not in gitlab_on.requests[0].query
    assert incremental_start() is not None


def test_an_issue_that_loses_the_label_is_marked_removed_and_comes_back_when_it_regains_it(
    gitlab_on, gitlab_client
):
    iid = seed(gitlab_on, 2)[0]
    sync_issues(full=True, client=gitlab_client)

    gitlab_on.set_labels(iid, ["Open"])
    removed = sync_issues(full=True, client=gitlab_client)
    issue = ScopingIssue.objects.get(iid=iid)
    assert issue.removed_at is not None
    assert removed.counts["removed"] == 1
    assert ScopingIssue.objects.current().count() == 1

    gitlab_on.set_labels(iid, [SCOPING, "Open"])
    restored = sync_issues(client=gitlab_client)
    issue.refresh_from_db()
    assert issue.removed_at is None
    assert restored.counts["restored"] == 1


def test_an_issue_shifted_past_the_listing_by_a_concurrent_edit_is_not_marked_removed(
    gitlab_on, gitlab_client
):
    iids = seed(gitlab_on, 150)
    sync_issues(full=True, client=gitlab_client)
    # While we read page 2, someone takes an issue of page 1 out: every later issue moves up one
    # place, and the first of page 2 slides onto page 1, which we have already read.
    gitlab_on.before_next(lambda: gitlab_on.set_labels(iids[0], ["Open"]), method="GET", path=ISSUES)
    gitlab_on.reset_requests()

    sync_issues(full=True, client=gitlab_client)

    gitlab_on.clear_faults()
    assert list(ScopingIssue.objects.filter(removed_at__isnull=False).values_list("iid", flat=True)) == [
        iids[0]
    ]
    assert ScopingIssue.objects.current().count() == 149
    (asked_again,) = [r for r in gitlab_on.requests if "iids[]" in r.query]
    assert "labels" not in asked_again.query


def test_label_problems_are_recorded_as_data_quality_problems(gitlab_on, gitlab_client):
    gitlab_on.add_issue(labels=[SCOPING, "proposal::SOW_WIP", "proposal::Approved", "Segment::Mars"])

    sync_issues(full=True, client=gitlab_client)

    kinds = set(DataQualityProblem.objects.values_list("kind", flat=True))
    assert {ProblemKind.TWO_WORKFLOW_LABELS, ProblemKind.UNKNOWN_SEGMENT} <= kinds


def test_a_human_edit_moves_last_activity(gitlab_on, gitlab_client):
    iid = seed(gitlab_on, 1, start=recently(days=20))[0]
    sync_issues(full=True, client=gitlab_client)
    edited = recently(hours=1)
    gitlab_on.edit_issue(iid, description="Customer wants a bigger scope", when=edited)

    sync_issues(client=gitlab_client)

    issue = ScopingIssue.objects.get()
    assert issue.last_activity_at == issue.updated_at
    assert abs(issue.last_activity_at - edited) < timedelta(milliseconds=1)


def test_the_updated_at_of_our_own_write_is_not_activity(gitlab_on, gitlab_client):
    iid = seed(gitlab_on, 1, start=recently(days=20))[0]
    sync_issues(full=True, client=gitlab_client)
    before = ScopingIssue.objects.get().last_activity_at
    ours = gitlab_client.update_issue(iid, add_labels=["EM_Status::Waiting"])
    ScopingIssue.objects.update(own_write_from=ours.updated_at, own_write_updated_at=ours.updated_at)

    sync_issues(client=gitlab_client)

    issue = ScopingIssue.objects.get()
    assert issue.labels == sorted([SCOPING, "Open", "EM_Status::Waiting"])
    assert issue.updated_at == ours.updated_at
    assert issue.last_activity_at == before


def test_an_issue_with_a_write_still_queued_is_left_to_the_write_back(gitlab_on, gitlab_client):
    iid = seed(gitlab_on, 1)[0]
    sync_issues(full=True, client=gitlab_client)
    issue = ScopingIssue.objects.get()
    GitLabWrite.objects.create(issue=issue, intent={"stage": "SOW_WIP"})
    issue.labels = [SCOPING, "proposal::SOW_WIP"]
    issue.save()
    gitlab_on.touch(iid, when=recently(minutes=1))

    run = sync_issues(full=True, client=gitlab_client)

    issue.refresh_from_db()
    assert issue.labels == [SCOPING, "proposal::SOW_WIP"]
    assert run.counts["skipped_pending_write"] == 1


def test_an_outage_fails_the_run_with_the_reason_and_raises(gitlab_on, gitlab_client):
    seed(gitlab_on, 150)
    gitlab_on.fail_next(502, times=50, path=ISSUES)

    with pytest.raises(GitLabUnavailable):
        sync_issues(full=True, client=gitlab_client)

    run = SyncRun.objects.get()
    assert run.status == SyncStatus.FAILED
    assert "502" in run.error
    assert run.finished_at is not None
    assert incremental_start() is None


def test_an_outage_on_a_later_page_keeps_what_was_read_and_marks_nothing_removed(gitlab_on, gitlab_client):
    iids = seed(gitlab_on, 150)
    sync_issues(full=True, client=gitlab_client)
    gitlab_on.set_labels(iids[-1], ["Open"])
    gitlab_on.before_next(lambda: gitlab_on.fail_next(503, times=50), method="GET", path=ISSUES)

    with pytest.raises(GitLabUnavailable):
        sync_issues(full=True, client=gitlab_client)

    gitlab_on.clear_faults()
    assert ScopingIssue.objects.current().count() == 150
