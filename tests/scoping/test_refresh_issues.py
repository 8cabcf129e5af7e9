"""Derived fields, EM resolution, opportunity links and data-quality problems after a sync."""

from __future__ import annotations

import pytest

from opportunities.choices import Segment
from scoping.choices import IssueState, ProblemKind, Stage
from scoping.models import ScopingIssue
from scoping.services import refresh_issues
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def _refreshed(issue) -> ScopingIssue:
    refresh_issues(issues=ScopingIssue.objects.filter(pk=issue.pk))
    return ScopingIssue.objects.get(pk=issue.pk)


def _problem_kinds(issue) -> set[str]:
    return set(issue.problems.values_list("kind", flat=True))


def test_labels_changed_on_gitlab_update_the_derived_columns():
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    ScopingIssue.objects.filter(pk=issue.pk).update(
        labels=[SC, "proposal:closed_won", "close_qtr::Q325", "Ent_East"], state=IssueState.CLOSED
    )
    issue = _refreshed(issue)
    assert (issue.stage, issue.close_qtr, issue.segment) == (Stage.CLOSED_WON, "Q325", Segment.ENT_EAST)
    assert issue.outcome == "won"


def test_assignee_who_is_an_em_is_the_issue_em():
    em = EngagementManagerFactory(gitlab_username="hkim")
    issue = _refreshed(ScopingIssueFactory(assignee_usernames=["someone", "HKim"]))
    assert issue.engagement_manager == em


def test_without_an_em_assignee_the_opportunity_em_is_used():
    em = EngagementManagerFactory()
    opportunity = OpportunityFactory(engagement_manager=em)
    issue = _refreshed(
        ScopingIssueFactory(description=f"Opp: https://x.my.salesforce.com/{opportunity.salesforce_id}")
    )
    assert issue.opportunity == opportunity
    assert issue.engagement_manager == em
    assert _problem_kinds(issue) == set()


def test_assignee_and_opportunity_naming_different_ems_is_a_problem():
    assigned = EngagementManagerFactory(gitlab_username="tbecker")
    opportunity = OpportunityFactory(engagement_manager=EngagementManagerFactory())
    issue = _refreshed(
        ScopingIssueFactory(assignee_usernames=["tbecker"], description=opportunity.salesforce_id[:15])
    )
    assert issue.engagement_manager == assigned
    assert _problem_kinds(issue) == {ProblemKind.EM_MISMATCH}


def test_opportunity_link_found_from_the_opportunity_side():
    issue = ScopingIssueFactory(iid=4242)
    opportunity = OpportunityFactory(scoping_issue_link="https://gitlab.com/group/ps-plan/-/work_items/4242")
    assert _refreshed(issue).opportunity == opportunity


def test_sides_that_disagree_keep_the_issue_link_and_record_a_problem():
    named = OpportunityFactory()
    issue = ScopingIssueFactory(iid=77, description=f"See {named.salesforce_id}")
    OpportunityFactory(scoping_issue_link="https://gitlab.com/group/ps-plan/issues/77")
    issue = _refreshed(issue)
    assert issue.opportunity == named
    assert _problem_kinds(issue) == {ProblemKind.OPPORTUNITY_LINK_MISMATCH}


def test_an_unknown_opportunity_id_is_a_problem_not_a_guess():
    issue = _refreshed(ScopingIssueFactory(description="Opportunity 006000000000999ZZZ"))
    assert issue.opportunity is None
    assert _problem_kinds(issue) == {ProblemKind.OPPORTUNITY_NOT_FOUND}


def test_label_problems_are_replaced_not_piled_up_on_each_refresh():
    issue = ScopingIssueFactory(labels=[SC, "Segment::Ent_LATAM", "Open", "proposal::SOW_WIP"])
    _refreshed(issue)
    issue = _refreshed(issue)
    assert sorted(issue.problems.values_list("kind", flat=True)) == [
        ProblemKind.TWO_WORKFLOW_LABELS,
        ProblemKind.UNKNOWN_SEGMENT,
    ]


def test_refresh_of_unchanged_issues_changes_no_rows():
    ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP"])
    refresh_issues()
    assert refresh_issues() == 0
