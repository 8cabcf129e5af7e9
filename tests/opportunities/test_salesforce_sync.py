"""The Salesforce pull, with real simple-salesforce over HTTPS against the local stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import Account, EngagementManager, Opportunity, OpportunityChange, SyncRun
from opportunities.salesforce_client import SalesforceRateLimited, SalesforceUnavailable
from opportunities.salesforce_sync import SalesforceDisabled, pull_opportunities
from opportunities.services import update_ps_fields
from psplan.queue import WriteStatus
from tests.factories import EngagementManagerFactory, TerritoryFactory
from tests.standins import salesforce as faults
from tests.standins.salesforce import SalesforceStandIn, django_settings_for

pytestmark = pytest.mark.django_db
USERNAME, PASSWORD, SECURITY_TOKEN = "sync@psplan.example.com", "correct horse", "TOKEN42"
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def salesforce(settings, monkeypatch) -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(username=USERNAME, password=PASSWORD, security_token=SECURITY_TOKEN) as standin:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", standin.ca_bundle_path)
        for name, value in django_settings_for(standin).items():
            setattr(settings, name, value)
        yield standin


def data_writes(queries: CaptureQueriesContext) -> list[str]:
    """INSERT/UPDATE/DELETE statements other than the SyncRun bookkeeping."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().split(" ", 1)[0] in {"INSERT", "UPDATE", "DELETE"}
        and "opportunities_syncrun" not in q["sql"]
    ]


def test_a_full_pull_mirrors_opportunities_with_an_em_or_a_scoping_link_and_nothing_else(salesforce):
    em = salesforce.add_user("Emma Manager", "emma@example.com")
    with_em = salesforce.add_opportunity(Name="Acme expansion", Engagement_Manager__c=em, Amount="1000.125")
    with_link = salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/ps/-/issues/7")
    salesforce.add_opportunity(Name="Nobody's")

    result = pull_opportunities(full=True)

    assert set(Opportunity.objects.values_list("salesforce_id", flat=True)) == {with_em, with_link}
    mirrored = Opportunity.objects.get(salesforce_id=with_em)
    assert (mirrored.name, mirrored.engagement_manager.name, mirrored.amount) == (
        "Acme expansion",
        "Emma Manager",
        Decimal("1000.13"),
    )
    assert mirrored.em_confidence == "Grey"  # empty in Salesforce means Grey
    assert result.changed_ids == {with_em, with_link}
    run = result.run
    assert (run.kind, run.status, run.error) == (SyncKind.SALESFORCE_FULL, SyncStatus.SUCCEEDED, "")
    assert run.counts["created"] == 2 and run.counts["fetched"] == 2
    assert run.high_water_mark == mirrored.system_modstamp or run.high_water_mark > mirrored.system_modstamp


def test_accounts_keep_their_sales_territory_and_find_the_territory_by_exact_name(salesforce):
    territory = TerritoryFactory(name="EMEA - Enterprise - DACH")
    em = salesforce.add_user("Emma Manager", "emma@example.com")
    known = salesforce.add_account("Globex", "EMEA - Enterprise - DACH")
    unknown = salesforce.add_account("Initech", "emea - enterprise - dach ")
    salesforce.add_opportunity(AccountId=known, Engagement_Manager__c=em)
    salesforce.add_opportunity(AccountId=unknown, Engagement_Manager__c=em)

    pull_opportunities(full=True)

    globex, initech = Account.objects.get(name="Globex"), Account.objects.get(name="Initech")
    assert (globex.salesforce_id, globex.territory) == (known, territory)
    assert (initech.sales_territory, initech.territory) == ("emea - enterprise - dach ", None)


def test_an_em_known_by_email_gains_the_salesforce_user_id_and_a_new_one_is_created(salesforce):
    known = EngagementManagerFactory(name="Priya R.", email="Priya@Example.com", salesforce_user_id="")
    priya = salesforce.add_user("Priya Raman", "priya@example.com")
    tom = salesforce.add_user("Tom Becker", "tom@example.com")
    salesforce.add_opportunity(Engagement_Manager__c=priya)
    salesforce.add_opportunity(Engagement_Manager__c=tom)

    result = pull_opportunities(full=True)

    known.refresh_from_db()
    assert (known.name, known.salesforce_user_id, known.gitlab_username) == (
        "Priya Raman",
        priya,
        known.gitlab_username,
    )
    created = EngagementManager.objects.get(salesforce_user_id=tom)
    assert (created.name, created.email, created.gitlab_username) == ("Tom Becker", "tom@example.com", "")
    assert (result.run.counts["ems_created"], result.run.counts["ems_updated"]) == (1, 1)


@pytest.mark.parametrize(
    ("close_date", "quarter"),
    [("2024-01-31", "Q424"), ("2024-02-01", "Q125"), ("2024-08-15", "Q325"), ("2024-11-01", "Q425")],
)
def test_close_quarter_is_the_fiscal_quarter_of_the_close_date(salesforce, close_date, quarter):
    salesforce.add_opportunity(
        CloseDate=close_date, Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1"
    )

    pull_opportunities(full=True)

    assert Opportunity.objects.get().close_quarter == quarter


def test_opportunities_named_only_by_issues_are_fetched_300_ids_per_query(salesforce):
    referenced = [salesforce.add_opportunity(Name=f"Referenced {n}") for n in range(650)]
    salesforce.add_opportunity(Engagement_Manager__c=salesforce.add_user("Emma", "emma@example.com"))
    salesforce.reset_requests()

    result = pull_opportunities(full=True, extra_ids=[each[:15] for each in referenced])

    assert [r.kind for r in salesforce.requests] == ["query"] * 4
    assert all(" IN (" in r.soql for r in salesforce.requests[1:])
    assert Opportunity.objects.count() == 651
    assert (result.run.counts["referenced"], result.run.counts.get("referenced_missing", 0)) == (650, 0)


def test_a_referenced_id_salesforce_does_not_know_or_a_malformed_one_is_counted_not_fatal(salesforce):
    result = pull_opportunities(full=True, extra_ids=["006000000000999AAA", "006'; DROP"])

    assert result.run.status == SyncStatus.SUCCEEDED
    assert (result.run.counts["referenced_missing"], result.run.counts["referenced_malformed"]) == (1, 1)


def test_an_incremental_pull_asks_only_for_changes_since_the_high_water_mark_minus_the_overlap(salesforce):
    em = salesforce.add_user("Emma", "emma@example.com")
    ids = [salesforce.add_opportunity(Engagement_Manager__c=em, SystemModstamp=LONG_AGO) for _ in range(3)]
    pull_opportunities(full=True)
    salesforce.modify_opportunity(ids[1], StageName="Closed Won")
    salesforce.reset_requests()

    result = pull_opportunities()

    assert result.run.kind == SyncKind.SALESFORCE_INCREMENTAL
    assert "SystemModstamp > 2023-12-31T23:55:00.000Z" in salesforce.requests[0].soql
    assert [r.kind for r in salesforce.requests] == ["query"]
    assert result.changed_ids == {ids[1]}
    # The overlap re-reads what changed in the last five minutes before the mark, harmlessly.
    assert (result.run.counts["fetched"], result.run.counts["updated"], result.run.counts["unchanged"]) == (
        3,
        1,
        2,
    )
    assert Opportunity.objects.get(salesforce_id=ids[1]).is_won
    assert result.run.high_water_mark > LONG_AGO


def test_an_incremental_pull_fetches_new_references_of_any_age_and_open_ones_only_when_changed(salesforce):
    salesforce.add_opportunity(
        Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1", SystemModstamp=LONG_AGO
    )
    old_open = salesforce.add_opportunity(SystemModstamp=LONG_AGO)
    old_closed = salesforce.add_opportunity(StageName="Closed Won", SystemModstamp=LONG_AGO)
    pull_opportunities(full=True, extra_ids=[old_open, old_closed])
    newly_named = salesforce.add_opportunity(SystemModstamp=LONG_AGO)
    salesforce.modify_opportunity(old_open, StageName="Closed Lost")
    salesforce.reset_requests()

    result = pull_opportunities(extra_ids=[old_open, old_closed, newly_named])

    by_id = [r.soql for r in salesforce.requests if " IN (" in r.soql]
    assert len(by_id) == 2
    assert newly_named in by_id[0] and "SystemModstamp >" not in by_id[0]
    assert old_open in by_id[1] and old_closed not in by_id[1] and "SystemModstamp >" in by_id[1]
    assert result.changed_ids == {old_open, newly_named}
    assert Opportunity.objects.get(salesforce_id=old_open).stage_name == "Closed Lost"


def test_a_pull_with_nothing_changed_writes_nothing_to_salesforce_or_the_database(salesforce):
    em = salesforce.add_user("Emma", "emma@example.com")
    account = salesforce.add_account("Globex", "AMER - SMB")
    for _ in range(5):
        salesforce.add_opportunity(Engagement_Manager__c=em, AccountId=account, Amount="10.5")
    pull_opportunities(full=True)
    salesforce.reset_requests()

    with CaptureQueriesContext(connection) as queries:
        result = pull_opportunities(full=True)

    assert salesforce.write_requests == []
    assert data_writes(queries) == []
    assert result.changed_ids == set()
    assert result.run.counts["unchanged"] == 5


def test_changes_of_close_date_stage_em_and_confidence_are_kept_as_history(salesforce):
    emma = salesforce.add_user("Emma Manager", "emma@example.com")
    tom = salesforce.add_user("Tom Becker", "tom@example.com")
    opportunity = salesforce.add_opportunity(Engagement_Manager__c=emma, CloseDate="2024-03-01", Amount=5)
    pull_opportunities(full=True)
    salesforce.modify_opportunity(
        opportunity,
        CloseDate="2024-04-15",
        StageName="Negotiation",
        Engagement_Manager__c=tom,
        EM_Confidence__c="Amber",
        Amount=6,
    )

    pull_opportunities()

    changes = {c.field: (c.old_value, c.new_value) for c in OpportunityChange.objects.all()}
    assert changes == {
        "CloseDate": ("2024-03-01", "2024-04-15"),
        "StageName": ("Prospecting", "Negotiation"),
        "EngagementManager": ("Emma Manager", "Tom Becker"),
        "EMConfidence": ("Grey", "Amber"),
    }
    mirrored = Opportunity.objects.get()
    assert OpportunityChange.objects.first().changed_at == mirrored.system_modstamp
    assert (mirrored.amount, mirrored.close_quarter) == (Decimal("6.00"), "Q125")


def test_a_ps_plan_edit_still_waiting_for_salesforce_is_not_reverted_by_a_pull(salesforce, em_user):
    em = salesforce.add_user("Emma", "emma@example.com")
    sf_id = salesforce.add_opportunity(Engagement_Manager__c=em)
    pull_opportunities(full=True)
    opportunity = Opportunity.objects.get()
    update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    salesforce.modify_opportunity(sf_id, StageName="Negotiation")

    pull_opportunities()

    opportunity.refresh_from_db()
    assert (opportunity.em_confidence, opportunity.stage_name) == ("Green", "Negotiation")
    assert opportunity.writes.get().status == WriteStatus.PENDING


def test_4500_opportunities_take_three_query_requests_and_report_progress(salesforce):
    em = salesforce.add_user("Emma", "emma@example.com")
    for n in range(4500):
        salesforce.add_opportunity(Name=f"Deal {n}", Engagement_Manager__c=em)
    salesforce.reset_requests()
    seen: list[int] = []

    pull_opportunities(full=True, progress=seen.append)

    assert [r.kind for r in salesforce.requests] == ["query", "query_more", "query_more"]
    assert seen == [2000, 2000, 500]
    assert Opportunity.objects.count() == 4500


# --------------------------------------------------------------------------- resilience


def test_an_expired_session_is_renewed_once_with_the_password_and_the_run_succeeds(salesforce):
    salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")
    salesforce.expire_session()

    result = pull_opportunities(full=True)

    assert result.run.status == SyncStatus.SUCCEEDED
    assert [(r.kind, r.status) for r in salesforce.requests] == [
        ("query", 401),
        ("login", 200),
        ("query", 200),
    ]
    assert Opportunity.objects.count() == 1


def test_request_limit_exceeded_fails_the_run_clearly_and_later_runs_back_off_without_asking(salesforce):
    salesforce.inject_fault(faults.RATE_LIMITED, times=3)

    with pytest.raises(SalesforceRateLimited):
        pull_opportunities(full=True)

    failed = SyncRun.objects.get()
    assert failed.status == SyncStatus.FAILED
    assert "API request limit exceeded" in failed.error and "backs off" in failed.error
    assert failed.counts["rate_limited"] is True
    assert len(salesforce.requests) == 1
    with pytest.raises(SalesforceRateLimited, match="waits until"):
        pull_opportunities(full=True)
    assert len(salesforce.requests) == 1
    assert SyncRun.objects.first().status == SyncStatus.SKIPPED
    salesforce.clear_faults()
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=31)):
        assert pull_opportunities(full=True).run.status == SyncStatus.SUCCEEDED


def test_two_503_answers_are_retried_and_the_run_succeeds(salesforce):
    salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")
    salesforce.inject_fault(faults.UNAVAILABLE, times=2)

    assert pull_opportunities(full=True).run.status == SyncStatus.SUCCEEDED
    assert [r.status for r in salesforce.requests] == [503, 503, 200]


def test_an_outage_fails_the_run_with_the_reason_and_raises_unavailable(salesforce, settings):
    settings.SALESFORCE_MAX_RETRIES = 1
    salesforce.inject_fault(faults.SERVER_ERROR, times=5)

    with pytest.raises(SalesforceUnavailable, match="HTTP 500"):
        pull_opportunities(full=True)

    run = SyncRun.objects.get()
    assert run.status == SyncStatus.FAILED and "HTTP 500 UNKNOWN_EXCEPTION" in run.error
    assert run.finished_at is not None and run.counts["requests"] == 2


def test_api_usage_from_sforce_limit_info_is_recorded_on_the_run(salesforce):
    salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")

    counts = pull_opportunities(full=True).run.counts

    assert (counts["api_used"], counts["api_limit"], counts["requests"]) == (1, salesforce.api_limit, 1)


def test_with_salesforce_disabled_a_pull_refuses_without_recording_a_run(settings):
    settings.SALESFORCE_ENABLED = False

    with pytest.raises(SalesforceDisabled, match="SALESFORCE_INSTANCE_URL"):
        pull_opportunities()
    assert not SyncRun.objects.exists()


def test_a_first_incremental_pull_is_a_full_one(salesforce):
    salesforce.add_opportunity(
        Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1", CloseDate=date(2025, 1, 1)
    )

    assert pull_opportunities().run.kind == SyncKind.SALESFORCE_FULL
