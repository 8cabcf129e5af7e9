"""EM edits change the local row, record its history and queue what the EM wants, in one transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from opportunities.choices import Segment
from psplan.audit import ChangeSource
from psplan.fiscal import quarter_code
from scoping import services
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import GitLabWrite, IssueChange
from tests.factories import EngagementManagerFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def test_moving_between_stages_queues_the_stage_and_swaps_the_local_labels(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::Strawman_WIP", "someone-else"])
    write = services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user)
    assert write.intent == {"stage": "SOW_WIP", "state": "opened"}
    assert (write.created_by, write.source) == (em_user, ChangeSource.PAGE)
    issue.refresh_from_db()
    assert issue.stage == Stage.SOW_WIP
    assert issue.labels == [SC, "someone-else", "proposal::SOW_WIP"]


def test_moving_to_closed_won_closes_and_stamps_this_quarter(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::Approved"])
    write = services.set_issue_stage(issue=issue, stage=Stage.CLOSED_WON, actor=em_user)
    assert write.intent == {
        "stage": "Closed_Won",
        "state": "closed",
        "close_qtr": quarter_code(timezone.localdate()),
    }
    issue.refresh_from_db()
    assert (issue.state, issue.stage, issue.outcome) == (IssueState.CLOSED, Stage.CLOSED_WON, "won")


def test_moving_a_closed_issue_to_a_stage_reopens_it(em_user):
    issue = ScopingIssueFactory(state=IssueState.CLOSED, labels=[SC])
    write = services.set_issue_stage(issue=issue, stage=Stage.ON_HOLD, actor=em_user)
    assert write.intent == {"stage": "On_hold", "state": "opened"}
    issue.refresh_from_db()
    assert (issue.state, issue.stage, issue.closed_at) == (IssueState.OPENED, Stage.ON_HOLD, None)


def test_setting_what_is_already_there_queues_nothing(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP", "Segment::SMB", "EM_Status::ToDo"])
    assert services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user) is None
    assert services.set_issue_segment(issue=issue, segment=Segment.SMB, actor=em_user) is None
    assert services.set_issue_em_status(issue=issue, em_status=EMStatus.TODO, actor=em_user) is None
    assert not GitLabWrite.objects.exists()
    assert not IssueChange.objects.exists()


def test_segment_and_em_status_writes_replace_variants_locally_and_queue_the_wanted_values(em_user):
    issue = ScopingIssueFactory(labels=[SC, "Ent_East", "em_status:waiting"])
    services.set_issue_segment(issue=issue, segment=Segment.MM_WEST, actor=em_user)
    services.set_issue_em_status(issue=issue, em_status=None, actor=em_user)
    assert list(GitLabWrite.objects.values_list("intent", flat=True)) == [
        {"segment": "MM_West"},
        {"em_status": None},
    ]
    issue.refresh_from_db()
    assert (issue.segment, issue.em_status) == (Segment.MM_WEST, "")
    assert issue.labels == [SC, "Segment::MM_West"]


def test_assigning_an_em_sends_their_gitlab_user(em_user):
    em = EngagementManagerFactory(gitlab_user_id=4321, name="Tom Becker")
    issue = ScopingIssueFactory()
    write = services.set_issue_engagement_manager(issue=issue, engagement_manager=em, actor=em_user)
    assert write.intent == {"assignee_ids": [4321]}
    issue.refresh_from_db()
    assert issue.engagement_manager == em
    change = IssueChange.objects.get()
    assert (change.field, change.old_value, change.new_value, change.write) == (
        "engagement_manager",
        "",
        "Tom Becker",
        write,
    )


def test_an_em_without_a_gitlab_user_cannot_be_assigned(em_user):
    em = EngagementManagerFactory(gitlab_user_id=None)
    with pytest.raises(ValueError, match="no linked GitLab user"):
        services.set_issue_engagement_manager(
            issue=ScopingIssueFactory(), engagement_manager=em, actor=em_user
        )
    assert not GitLabWrite.objects.exists()


def test_every_edit_is_recorded_with_who_from_where_and_its_write(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::Strawman_WIP"])
    write = services.set_issue_stage(
        issue=issue, stage=Stage.APPROVED, actor=em_user, source=ChangeSource.API
    )
    change = IssueChange.objects.get()
    assert (change.field, change.old_value, change.new_value) == ("stage", "Strawman_WIP", "Approved")
    assert (change.actor, change.source, change.write) == (em_user, ChangeSource.API, write)
    assert change.who == (em_user.get_full_name() or em_user.username)


def test_a_persons_edit_is_activity_so_a_stale_card_moved_is_no_longer_stale(em_user):
    long_ago = timezone.now() - timedelta(days=90)
    issue = ScopingIssueFactory(labels=[SC, "proposal::On_hold"], last_activity_at=long_ago)
    assert issue.is_stale(as_of=timezone.now())
    services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user)
    issue.refresh_from_db()
    assert not issue.is_stale(as_of=timezone.now())
    assert issue.last_activity_at > timezone.now() - timedelta(minutes=1)


def test_keep_open_override_is_recorded_with_its_reason_and_refuses_the_past(em_user):
    issue = ScopingIssueFactory()
    until = timezone.localdate() + timedelta(days=30)
    services.set_keep_open(issue=issue, until=until, actor=em_user, reason="Customer on holiday")
    issue.refresh_from_db()
    assert (issue.keep_open_until, issue.keep_open_set_by, issue.keep_open_reason) == (
        until,
        em_user,
        "Customer on holiday",
    )
    change = IssueChange.objects.get()
    assert (change.field, change.new_value, change.note) == (
        "keep_open_until",
        until.isoformat(),
        "Customer on holiday",
    )
    with pytest.raises(ValueError, match="today or later"):
        services.set_keep_open(issue=issue, until=timezone.localdate() - timedelta(days=1), actor=em_user)


def test_clearing_an_override_forgets_its_reason(em_user):
    issue = ScopingIssueFactory(
        keep_open_until=timezone.localdate() + timedelta(days=3), keep_open_reason="x"
    )
    services.set_keep_open(issue=issue, until=None, actor=em_user)
    issue.refresh_from_db()
    assert (issue.keep_open_until, issue.keep_open_reason) == (None, "")
    assert IssueChange.objects.get().new_value == ""
