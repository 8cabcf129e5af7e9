"""The scoping step of a Salesforce sync: opportunities named by issues, links, and what it refreshes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import Opportunity, SyncRun
from opportunities.salesforce_client import SalesforceUnavailable
from opportunities.services import update_ps_fields
from psplan.queue import WriteStatus
from scoping.choices import IssueState, ProblemKind, Stage
from scoping.models import GitLabWrite, ScopingIssue
from scoping.opportunity_sync import sync_salesforce
from scoping.rules import apply_rules
from scoping.sync import run_sync
from tests.factories import ScopingIssueFactory
from tests.standins import salesforce as faults
from tests.standins.salesforce import SalesforceStandIn

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


def lightning_url(salesforce: SalesforceStandIn, opportunity_id: str) -> str:
    return f"{salesforce.instance_url}/lightning/r/Opportunity/{opportunity_id}/view"


def test_opportunities_named_by_issues_are_fetched_and_both_link_directions_are_resolved(salesforce):
    emma = salesforce.add_user("Emma Manager", "emma@example.com")
    named_only = salesforce.add_opportunity(Name="Named in the issue", SystemModstamp=LONG_AGO)
    linking = salesforce.add_opportunity(
        Engagement_Manager__c=emma, Scoping_Issue_Link__c="https://gitlab.com/any/path/-/work_items/502"
    )
    by_description = ScopingIssueFactory(
        iid=501, description=f"Opportunity: {lightning_url(salesforce, named_only)}"
    )
    by_link = ScopingIssueFactory(iid=502)
    salesforce.add_opportunity(Name="Unrelated")

    run = sync_salesforce(full=True)

    assert (run.kind, run.status) == (SyncKind.SALESFORCE_FULL, SyncStatus.SUCCEEDED)
    assert Opportunity.objects.count() == 2
    by_description.refresh_from_db()
    by_link.refresh_from_db()
    assert by_description.opportunity.salesforce_id == named_only
    assert by_link.opportunity.salesforce_id == linking
    assert by_link.engagement_manager.name == "Emma Manager"
    assert run.counts["issues_refreshed"] == 2


def test_two_opportunities_claiming_one_issue_link_neither_and_raise_a_problem(salesforce):
    for _ in range(2):
        salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/ps-plan/issues/7")
    issue = ScopingIssueFactory(iid=7)

    sync_salesforce(full=True)

    issue.refresh_from_db()
    assert issue.opportunity is None
    assert list(issue.problems.values_list("kind", flat=True)) == [ProblemKind.OPPORTUNITY_LINK_MISMATCH]


def test_a_sync_with_nothing_changed_writes_nothing_anywhere(salesforce):
    emma = salesforce.add_user("Emma Manager", "emma@example.com")
    opportunity = salesforce.add_opportunity(Engagement_Manager__c=emma, SystemModstamp=LONG_AGO)
    ScopingIssueFactory(description=opportunity, labels=[SC, "Segment::Ent_LATAM"])  # a problem to keep
    sync_salesforce(full=True)
    apply_rules()
    salesforce.reset_requests()

    with CaptureQueriesContext(connection) as queries:
        sync_salesforce()
        apply_rules()

    assert salesforce.write_requests == []
    assert not GitLabWrite.objects.exists()
    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert all("opportunities_syncrun" in sql for sql in writes), writes


def test_an_opportunity_closing_won_in_salesforce_closes_its_issue_after_sync_and_rules(salesforce):
    opportunity = salesforce.add_opportunity(CloseDate=date(2024, 1, 31), SystemModstamp=LONG_AGO)
    issue = ScopingIssueFactory(description=opportunity, labels=[SC, "proposal::Approved"])
    sync_salesforce(full=True)
    salesforce.modify_opportunity(opportunity, StageName="Closed Won")

    sync_salesforce()
    apply_rules()

    issue.refresh_from_db()
    assert (issue.stage, issue.close_qtr, issue.state) == (Stage.CLOSED_WON, "Q424", IssueState.CLOSED)


def test_only_issues_touching_a_changed_opportunity_are_refreshed(salesforce):
    changed, quiet = (salesforce.add_opportunity(SystemModstamp=LONG_AGO) for _ in range(2))
    salesforce.add_opportunity(
        Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1", SystemModstamp=LONG_AGO
    )
    touched = ScopingIssueFactory(description=changed, labels=[SC, "Segment::SMB"])
    untouched = ScopingIssueFactory(description=quiet, labels=[SC, "Segment::SMB"])
    sync_salesforce(full=True)
    # A derived column out of step with the labels shows whether refresh_issues looked at an issue.
    ScopingIssue.objects.update(segment="")
    salesforce.modify_opportunity(changed, StageName="Negotiation")

    run = sync_salesforce()

    assert run.counts["issues_refreshed"] == 1
    assert ScopingIssue.objects.get(pk=touched.pk).segment == "SMB"
    assert ScopingIssue.objects.get(pk=untouched.pk).segment == ""


def test_a_pull_keeps_pending_ps_field_edits_and_the_sync_then_delivers_them(salesforce, em_user):
    opportunity_id = salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")
    sync_salesforce(full=True)
    write = update_ps_fields(opportunity=Opportunity.objects.get(), actor=em_user, em_confidence="Green")

    report = run_sync(gitlab=False, salesforce=True, delivery_budget=5)

    assert report.ok, [step.message for step in report.steps]
    write.refresh_from_db()
    assert write.status == WriteStatus.DELIVERED
    assert salesforce.get_opportunity(opportunity_id)["EM_Confidence__c"] == "Green"
    assert Opportunity.objects.get().em_confidence == "Green"


def test_a_dry_run_pulls_but_keeps_pending_edits_local(salesforce, em_user):
    opportunity_id = salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")
    sync_salesforce(full=True)
    write = update_ps_fields(opportunity=Opportunity.objects.get(), actor=em_user, em_confidence="Green")
    salesforce.reset_requests()

    run_sync(gitlab=False, salesforce=True, dry_run=True, delivery_budget=5)

    write.refresh_from_db()
    assert write.status == WriteStatus.PENDING
    assert salesforce.write_requests == []
    assert salesforce.get_opportunity(opportunity_id)["EM_Confidence__c"] in ("", None, "Grey")
    assert Opportunity.objects.get().em_confidence == "Green"  # the pull does not undo the local edit


def test_with_salesforce_not_configured_the_sync_is_skipped_and_says_why(settings):
    settings.SALESFORCE_ENABLED = False

    run = sync_salesforce()

    assert run.status == SyncStatus.SKIPPED and "SALESFORCE_INSTANCE_URL" in run.error
    assert SyncRun.objects.get() == run


def test_an_unreachable_salesforce_is_recorded_on_the_run_and_raised(salesforce, settings):
    settings.SALESFORCE_MAX_RETRIES = 0
    salesforce.inject_fault(faults.UNAVAILABLE)

    with pytest.raises(SalesforceUnavailable, match="503"):
        sync_salesforce(full=True)

    run = SyncRun.objects.get()
    assert (run.kind, run.status) == (SyncKind.SALESFORCE_FULL, SyncStatus.FAILED)
    assert "SERVER_UNAVAILABLE" in run.error
    assert not ScopingIssue.objects.exists()
