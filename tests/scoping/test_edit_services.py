"""EM edits change the local row and queue exactly the matching GitLab change, in one transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from opportunities.choices import Segment
from psplan.fiscal import quarter_code
from scoping import services
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import GitLabWrite
from tests.factories import EngagementManagerFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def test_moving_between_stages_swaps_labels(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::Strawman_WIP", "someone-else"])
    write = services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user)
    assert (write.add_labels, write.remove_labels, write.state_event) == (
        ["proposal::SOW_WIP"],
        ["proposal::Strawman_WIP"],
        "",
    )
    issue.refresh_from_db()
    assert issue.stage == Stage.SOW_WIP
    assert issue.labels == [SC, "someone-else", "proposal::SOW_WIP"]
    assert write.created_by == em_user


def test_moving_to_closed_won_closes_and_stamps_this_quarter(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::Approved"])
    write = services.set_issue_stage(issue=issue, stage=Stage.CLOSED_WON, actor=em_user)
    assert write.state_event == "close"
    assert set(write.add_labels) == {
        "proposal::Closed_Won",
        f"close_qtr::{quarter_code(timezone.localdate())}",
    }
    issue.refresh_from_db()
    assert (issue.state, issue.stage, issue.outcome) == (IssueState.CLOSED, Stage.CLOSED_WON, "won")


def test_moving_a_closed_issue_to_a_stage_reopens_it(em_user):
    issue = ScopingIssueFactory(state=IssueState.CLOSED, labels=[SC])
    write = services.set_issue_stage(issue=issue, stage=Stage.ON_HOLD, actor=em_user)
    assert (write.state_event, write.add_labels) == ("reopen", ["proposal::On_hold"])
    issue.refresh_from_db()
    assert (issue.state, issue.stage, issue.closed_at) == (IssueState.OPENED, Stage.ON_HOLD, None)


def test_setting_what_is_already_there_queues_nothing(em_user):
    issue = ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP", "Segment::SMB", "EM_Status::ToDo"])
    assert services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user) is None
    assert services.set_issue_segment(issue=issue, segment=Segment.SMB, actor=em_user) is None
    assert services.set_issue_em_status(issue=issue, em_status=EMStatus.TODO, actor=em_user) is None
    assert not GitLabWrite.objects.exists()


def test_segment_and_em_status_writes_replace_variants(em_user):
    issue = ScopingIssueFactory(labels=[SC, "Ent_East", "em_status:waiting"])
    services.set_issue_segment(issue=issue, segment=Segment.MM_WEST, actor=em_user)
    services.set_issue_em_status(issue=issue, em_status=None, actor=em_user)
    writes = list(GitLabWrite.objects.values_list("add_labels", "remove_labels"))
    assert writes == [(["Segment::MM_West"], ["Ent_East"]), ([], ["em_status:waiting"])]
    issue.refresh_from_db()
    assert (issue.segment, issue.em_status) == (Segment.MM_WEST, "")


def test_assigning_an_em_sends_their_gitlab_user(em_user):
    em = EngagementManagerFactory(gitlab_user_id=4321)
    issue = ScopingIssueFactory()
    write = services.set_issue_engagement_manager(issue=issue, engagement_manager=em, actor=em_user)
    assert write.assignee_ids == [4321]
    issue.refresh_from_db()
    assert issue.engagement_manager == em


def test_an_em_without_a_gitlab_user_cannot_be_assigned(em_user):
    em = EngagementManagerFactory(gitlab_user_id=None)
    with pytest.raises(ValueError, match="no linked GitLab user"):
        services.set_issue_engagement_manager(
            issue=ScopingIssueFactory(), engagement_manager=em, actor=em_user
        )
    assert not GitLabWrite.objects.exists()


def test_keep_open_override_is_audited_and_refuses_the_past(em_user):
    issue = ScopingIssueFactory()
    until = timezone.localdate() + timedelta(days=30)
    services.set_keep_open(issue=issue, until=until, actor=em_user, reason="Customer on holiday")
    issue.refresh_from_db()
    assert (issue.keep_open_until, issue.keep_open_set_by) == (until, em_user)
    assert issue.overrides.get().reason == "Customer on holiday"
    with pytest.raises(ValueError, match="today or later"):
        services.set_keep_open(issue=issue, until=timezone.localdate() - timedelta(days=1), actor=em_user)
