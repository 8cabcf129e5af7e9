"""The Salesforce client, with real simple-salesforce over HTTPS against the local stand-in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from opportunities.salesforce_client import (
    ApiUsage,
    OpportunityUpdate,
    SalesforceClient,
    SalesforceOpportunity,
    SalesforceRateLimited,
    SalesforceRefused,
    SalesforceUnavailable,
    WriteResult,
)
from tests.standins import salesforce as standin_module
from tests.standins.salesforce import SalesforceStandIn

USERNAME = "integration@psplan.example.com"
PASSWORD = "correct horse"
SECURITY_TOKEN = "SECTOKEN123"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(username=USERNAME, password=PASSWORD, security_token=SECURITY_TOKEN) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle_path)
        yield server


def make_client(standin: SalesforceStandIn, **options: object) -> SalesforceClient:
    options = {"access_token": standin.access_token, "retry_base_delay": 0.0, **options}
    return SalesforceClient(instance_url=standin.instance_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def sf_client(standin: SalesforceStandIn) -> SalesforceClient:
    return make_client(standin)


def seed(standin: SalesforceStandIn, count: int, **fields: object) -> list[str]:
    return [standin.add_opportunity(Name=f"Deal {n}", **fields) for n in range(count)]


# --------------------------------------------------------------------------- reads


def test_paging_4500_opportunities_takes_three_query_requests(standin, sf_client):
    seed(standin, 4500)
    standin.reset_requests()

    opportunities = list(sf_client.iter_opportunities())

    assert len(opportunities) == 4500
    assert len({opportunity.id for opportunity in opportunities}) == 4500
    assert [r.kind for r in standin.requests] == ["query", "query_more", "query_more"]
    assert "ORDER BY SystemModstamp ASC" in standin.requests[0].soql
    stamps = [opportunity.system_modstamp for opportunity in opportunities]
    assert stamps == sorted(stamps)


def test_iteration_is_lazy_and_fetches_one_batch_at_a_time(standin, sf_client):
    seed(standin, 4500)
    standin.reset_requests()

    iterator = sf_client.iter_opportunities()
    assert standin.requests == []
    for _ in range(2001):
        next(iterator)
    assert len(standin.query_requests) == 2

    assert sum(1 for _ in iterator) == 2499
    assert len(standin.query_requests) == 3


def test_modified_since_returns_only_opportunities_changed_after_that_moment(standin, sf_client):
    old = seed(standin, 3, SystemModstamp=datetime(2024, 1, 1, tzinfo=UTC))
    seed(standin, 2, SystemModstamp=datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC))
    standin.modify_opportunity(old[0], StageName="Closed Won")

    changed = list(
        sf_client.iter_opportunities(modified_since=datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC))
    )

    assert [opportunity.id for opportunity in changed] == [old[0]]
    assert changed[0].is_closed and changed[0].is_won
    assert "SystemModstamp > 2024-03-01T12:00:00.250Z" in standin.requests[-1].soql


def test_where_clause_narrows_the_query(standin, sf_client):
    em = standin.add_user("Emma Manager", "emma@example.com")
    mirrored = standin.add_opportunity(Engagement_Manager__c=em)
    linked = standin.add_opportunity(Scoping_Issue_Link__c="https://gitlab.example.com/i/1")
    standin.add_opportunity()

    found = sf_client.iter_opportunities(
        where="Engagement_Manager__c != null OR Scoping_Issue_Link__c != null"
    )

    assert {opportunity.id for opportunity in found} == {mirrored, linked}


def test_modified_since_must_be_timezone_aware(sf_client):
    with pytest.raises(ValueError, match="aware"):
        sf_client.iter_opportunities(modified_since=datetime(2024, 1, 1))


def test_opportunities_by_id_are_fetched_300_per_query(standin, sf_client):
    ids = seed(standin, 700)
    seed(standin, 50)
    standin.reset_requests()
    wanted = [ids[0][:15], *ids[1:650], ids[0]]  # a 15-char id and its 18-char twin

    found = list(sf_client.iter_opportunities_by_id(wanted))

    assert sorted(opportunity.id for opportunity in found) == sorted(ids[:650])
    assert [r.kind for r in standin.requests] == ["query", "query", "query"]
    assert all(len(r.path) + len(r.soql) < 12_000 for r in standin.requests)


def test_a_malformed_id_is_rejected_before_any_request(standin, sf_client):
    with pytest.raises(ValueError, match="not a Salesforce id"):
        sf_client.iter_opportunities_by_id(["0065g00000AbCdE", "006' OR Name != '"])
    assert standin.requests == []


def test_relationship_fields_dates_and_amounts_are_parsed(standin, sf_client):
    em = standin.add_user("Emma Manager", "emma@example.com")
    owner = standin.add_user("Sam Seller", "sam@example.com")
    account = standin.add_account("Acme Corp", "Ent_EAST")
    full = standin.add_opportunity(
        Name="Acme expansion",
        AccountId=account,
        OwnerId=owner,
        StageName="Closed Won",
        CloseDate="2024-01-31",
        Amount="125000.50",
        Proserv_Amount__c=15000,
        Professional_Services_Value__c="12000.25",
        Engagement_Manager__c=em,
        EM_Confidence__c="Amber",
        EM_Confidence_Rationale__c="Waiting on legal",
        Scoping_Issue_Link__c="https://gitlab.example.com/ps/issues/42",
        SystemModstamp=datetime(2024, 2, 1, 10, 0, 0, 123000, tzinfo=UTC),
    )
    bare = standin.add_opportunity(Name="Bare", OwnerId=owner)

    by_id = {opportunity.id: opportunity for opportunity in sf_client.iter_opportunities()}

    assert by_id[full] == SalesforceOpportunity(
        id=full,
        name="Acme expansion",
        account_id=account,
        account_name="Acme Corp",
        sales_territory="Ent_EAST",
        stage_name="Closed Won",
        forecast_category="Closed",
        is_closed=True,
        is_won=True,
        close_date=date(2024, 1, 31),
        amount=Decimal("125000.5"),
        owner_id=owner,
        owner_name="Sam Seller",
        system_modstamp=datetime(2024, 2, 1, 10, 0, 0, 123000, tzinfo=UTC),
        proserv_amount=Decimal("15000.0"),
        ps_value=Decimal("12000.25"),
        engagement_manager_id=em,
        engagement_manager_name="Emma Manager",
        engagement_manager_email="emma@example.com",
        em_confidence="Amber",
        em_confidence_rationale="Waiting on legal",
        scoping_issue_link="https://gitlab.example.com/ps/issues/42",
    )
    assert by_id[full].ps_amount == Decimal("15000")
    empty = by_id[bare]
    assert (empty.account_id, empty.account_name, empty.sales_territory) == (None, "", "")
    assert (empty.engagement_manager_id, empty.engagement_manager_name) == (None, "")
    assert (empty.amount, empty.ps_amount, empty.scoping_issue_link) == (None, None, None)
    assert (empty.em_confidence, empty.em_confidence_rationale) == ("", "")
    assert empty.system_modstamp.tzinfo is not None


def test_field_names_can_be_overridden_for_an_org_that_names_them_differently(standin):
    standin.add_field("Opportunity", "PS_Confidence__c", "picklist")
    opportunity = standin.add_opportunity(PS_Confidence__c="Green", EM_Confidence__c="Red")
    client = make_client(standin, field_names={"em_confidence": "PS_Confidence__c"})

    (found,) = client.iter_opportunities_by_id([opportunity])

    assert found.em_confidence == "Green"
    assert "PS_Confidence__c" in standin.requests[-1].soql


def test_a_field_name_that_is_not_an_api_name_is_rejected(standin):
    with pytest.raises(ValueError, match="not a Salesforce API name"):
        make_client(standin, field_names={"name": "Name FROM User --"})


def test_a_field_the_org_lacks_is_refused_with_salesforces_error_code(standin):
    client = make_client(standin, field_names={"ps_value": "No_Such_Field__c"})

    with pytest.raises(SalesforceRefused) as caught:
        list(client.iter_opportunities())

    assert caught.value.error_code == "INVALID_FIELD"
    assert "No_Such_Field__c" in caught.value.message


# --------------------------------------------------------------------------- writes


def test_updating_450_records_takes_three_collection_requests_and_reports_failures_per_record(
    standin, sf_client
):
    ids = seed(standin, 450)
    updates = [OpportunityUpdate(id=each, fields={"em_confidence": "Green"}) for each in ids]
    updates[321] = OpportunityUpdate(id=ids[321], fields={"em_confidence": "Purple"})
    standin.reset_requests()

    results = sf_client.update_opportunities(updates)

    assert [r.path.rsplit("/", 2)[-2:] for r in standin.write_requests] == [["composite", "sobjects"]] * 3
    assert len(standin.requests) == 3
    failures = [result for result in results if not result.success]
    assert failures == [
        WriteResult(
            id=ids[321],
            success=False,
            error_code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            message="EM Confidence: bad value for restricted picklist field: Purple",
        )
    ]
    assert [result.id for result in results] == ids
    assert standin.get_opportunity(ids[0])["EM_Confidence__c"] == "Green"
    assert standin.get_opportunity(ids[321])["EM_Confidence__c"] is None


def test_a_validation_rule_failure_is_reported_for_that_record_only(standin, sf_client):
    first, second = seed(standin, 2)
    standin.set_validation_rule(
        lambda record: (
            "Rationale required for Red"
            if record["EM_Confidence__c"] == "Red" and not record["EM_Confidence_Rationale__c"]
            else None
        )
    )

    results = sf_client.update_opportunities(
        [
            OpportunityUpdate(id=first, fields={"em_confidence": "Red"}),
            OpportunityUpdate(
                id=second, fields={"em_confidence": "Red", "em_confidence_rationale": "Budget cut"}
            ),
        ]
    )

    assert results == [
        WriteResult(first, False, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Rationale required for Red"),
        WriteResult(second, True, "", ""),
    ]


def test_writes_convert_dates_amounts_and_clear_fields_with_none(standin, sf_client):
    em = standin.add_user("Emma Manager", "emma@example.com")
    opportunity = standin.add_opportunity(Engagement_Manager__c=em, Amount=10)

    (result,) = sf_client.update_opportunities(
        [
            OpportunityUpdate(
                id=opportunity,
                fields={
                    "close_date": date(2025, 6, 30),
                    "ps_value": Decimal("1234.56"),
                    "engagement_manager_id": None,
                },
            )
        ]
    )

    assert result.success
    stored = standin.get_opportunity(opportunity)
    assert stored["CloseDate"] == date(2025, 6, 30)
    assert stored["Professional_Services_Value__c"] == Decimal("1234.56")
    assert stored["Engagement_Manager__c"] is None


def test_read_only_fields_cannot_be_written(sf_client):
    with pytest.raises(ValueError, match="cannot be written"):
        sf_client.update_opportunities([OpportunityUpdate(id="0065g00000AbCdE", fields={"is_won": True})])


def test_conditional_updates_use_composite_and_report_a_conflict(standin, sf_client):
    ids = seed(standin, 30, SystemModstamp=datetime(2024, 5, 1, 9, 30, 0, 400000, tzinfo=UTC))
    seen_at = datetime(2024, 5, 1, 9, 30, 0, 400000, tzinfo=UTC)
    standin.modify_opportunity(ids[7], EM_Confidence__c="Red")  # someone edits in Salesforce
    standin.reset_requests()

    results = sf_client.update_opportunities(
        [
            OpportunityUpdate(id=each, fields={"em_confidence": "Green"}, unmodified_since=seen_at)
            for each in ids
        ]
    )

    assert [r.path.rsplit("/", 1)[-1] for r in standin.write_requests] == ["composite"] * 2
    assert [result.id for result in results if not result.success] == [ids[7]]
    assert results[7].error_code == "CONFLICT"
    assert standin.get_opportunity(ids[7])["EM_Confidence__c"] == "Red"
    assert standin.get_opportunity(ids[8])["EM_Confidence__c"] == "Green"
    assert b'"If-Unmodified-Since": "Wed, 01 May 2024 09:30:01 GMT"' in standin.requests[0].body


def test_plain_and_conditional_updates_keep_the_callers_order(standin, sf_client):
    first, second, third = seed(standin, 3)
    seen_at = datetime.now(UTC) + timedelta(seconds=5)

    results = sf_client.update_opportunities(
        [
            OpportunityUpdate(id=first, fields={"em_confidence": "Green"}, unmodified_since=seen_at),
            OpportunityUpdate(id=second, fields={"em_confidence": "Amber"}),
            OpportunityUpdate(id=third, fields={}),
        ]
    )

    assert [(result.id, result.success) for result in results] == [
        (first, True),
        (second, True),
        (third, True),
    ]
    assert len(standin.write_requests) == 2


# --------------------------------------------------------------------------- resilience


def test_expired_session_with_password_credentials_logs_in_once_and_succeeds(standin):
    seed(standin, 3)
    client = make_client(standin, username=USERNAME, password=PASSWORD, security_token=SECURITY_TOKEN)
    standin.expire_session()
    standin.reset_requests()

    assert len(list(client.iter_opportunities())) == 3

    assert [(r.kind, r.status) for r in standin.requests] == [
        ("query", 401),
        ("login", 200),
        ("query", 200),
    ]
    assert standin.logins == 1
    assert client.request_count == 3


def test_a_client_with_only_a_password_logs_in_on_its_first_call(standin):
    seed(standin, 1)
    client = make_client(
        standin,
        access_token="",
        username=USERNAME,
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
    )
    assert standin.requests == []

    assert len(list(client.iter_opportunities())) == 1
    assert [r.kind for r in standin.requests] == ["login", "query"]


def test_a_wrong_password_makes_salesforce_unavailable_without_retrying(standin):
    client = make_client(standin, access_token="", username=USERNAME, password="wrong", security_token="")

    with pytest.raises(SalesforceUnavailable, match="INVALID_LOGIN"):
        list(client.iter_opportunities())
    assert client.request_count == 1


def test_expired_session_with_only_an_access_token_is_unavailable(standin, sf_client):
    standin.expire_session()

    with pytest.raises(SalesforceUnavailable, match="access token rejected") as caught:
        list(sf_client.iter_opportunities())

    assert not isinstance(caught.value, SalesforceRateLimited)
    assert sf_client.request_count == 1


def test_request_limit_exceeded_stops_the_run_without_retrying(standin, sf_client):
    seed(standin, 1)
    standin.inject_fault(standin_module.RATE_LIMITED, times=5)

    with pytest.raises(SalesforceRateLimited, match="TotalRequests Limit exceeded"):
        list(sf_client.iter_opportunities())

    assert sf_client.request_count == 1
    assert len(standin.requests) == 1


def test_two_503_answers_are_retried_then_the_query_succeeds(standin, sf_client):
    seed(standin, 2)
    standin.inject_fault(standin_module.UNAVAILABLE, times=2)

    assert len(list(sf_client.iter_opportunities())) == 2

    assert [r.status for r in standin.requests] == [503, 503, 200]
    assert sf_client.request_count == 3


def test_a_dropped_connection_is_retried(standin, sf_client):
    seed(standin, 1)
    standin.inject_fault(standin_module.DISCONNECT)

    assert len(list(sf_client.iter_opportunities())) == 1
    assert sf_client.request_count == 2


def test_a_persistent_outage_becomes_unavailable_after_the_retries(standin):
    standin.inject_fault(standin_module.SERVER_ERROR, times=10)
    client = make_client(standin, max_retries=2)

    with pytest.raises(SalesforceUnavailable, match="HTTP 500 UNKNOWN_EXCEPTION"):
        list(client.iter_opportunities())

    assert client.request_count == 3


def test_a_failing_collection_write_is_retried_like_a_query(standin, sf_client):
    (opportunity,) = seed(standin, 1)
    standin.inject_fault(standin_module.UNAVAILABLE)

    (result,) = sf_client.update_opportunities(
        [OpportunityUpdate(id=opportunity, fields={"em_confidence": "Grey"})]
    )

    assert result.success
    assert [r.status for r in standin.requests] == [503, 200]


def test_an_unreachable_salesforce_is_unavailable(standin):
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SalesforceClient(
        instance_url=f"https://127.0.0.1:{port}",
        access_token="token",
        max_retries=1,
        retry_base_delay=0.0,
    )

    with pytest.raises(SalesforceUnavailable, match="ConnectionError"):
        list(client.iter_opportunities())
    assert client.request_count == 2


def test_tls_verification_stays_on_without_the_test_ca(standin, sf_client, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    with pytest.raises(SalesforceUnavailable, match="TLS verification failed"):
        list(sf_client.iter_opportunities())
    assert sf_client.request_count == 1


def test_api_usage_comes_from_the_latest_limit_info_header(standin, sf_client):
    seed(standin, 1)
    assert sf_client.api_usage is None

    list(sf_client.iter_opportunities())
    list(sf_client.iter_opportunities())

    assert sf_client.api_usage == ApiUsage(used=standin.api_used, limit=standin.api_limit)
    assert sf_client.api_usage.used == 2


# --------------------------------------------------------------------------- settings


def test_from_settings_reads_the_salesforce_settings(standin, settings):
    seed(standin, 1)
    settings.SALESFORCE_INSTANCE_URL = standin.instance_url
    settings.SALESFORCE_ACCESS_TOKEN = standin.access_token
    settings.SALESFORCE_API_VERSION = "58.0"
    settings.SALESFORCE_FIELD_NAMES = {"ps_value": "Proserv_Amount__c"}
    client = SalesforceClient.from_settings()

    assert client.field_names["ps_value"] == "Proserv_Amount__c"
    assert len(list(client.iter_opportunities())) == 1
    assert standin.requests[-1].path.startswith("/services/data/v58.0/")


def test_from_settings_without_an_instance_url_is_unavailable(settings):
    settings.SALESFORCE_INSTANCE_URL = ""
    with pytest.raises(SalesforceUnavailable, match="SALESFORCE_INSTANCE_URL"):
        SalesforceClient.from_settings()
