"""GET /api/v1/opportunities/ and GET|PATCH /api/v1/opportunities/{salesforce_id}/."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import EMConfidence
from opportunities.models import Opportunity, OpportunityChange, SalesforceWrite
from psplan.queue import WriteStatus
from tests.factories import EngagementManagerFactory, OpportunityFactory

pytestmark = pytest.mark.django_db
ISSUE_URL = "https://gitlab.com/gitlab-com/customer-success/professional-services-group/ww-consulting/ps-plan/-/issues/12"

LIST = "/api/v1/opportunities/"
OPP = "006000000000001AAA"


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return [item["salesforce_id"] for item in body["results"]]


def test_an_opportunity_has_its_ps_section_and_ps_amount(reader_api):
    em = EngagementManagerFactory(gitlab_username="praman", name="Priya Raman")
    opportunity = OpportunityFactory(
        salesforce_id=OPP,
        name="Acme renewal",
        close_date=date(2025, 9, 15),
        close_quarter="Q326",
        amount=Decimal("100000"),
        proserv_amount=None,
        ps_value=Decimal("12500.5"),
        engagement_manager=em,
        em_confidence=EMConfidence.AMBER,
        em_confidence_rationale="Budget moves to next quarter",
        scoping_issue_link="https://gitlab.com/x/-/issues/3",
    )
    item = reader_api.get(LIST).json()["results"][0]
    assert item == {
        "salesforce_id": OPP,
        "url": opportunity.salesforce_url,
        "name": "Acme renewal",
        "account": opportunity.account.name,
        "sales_territory": opportunity.account.sales_territory,
        "stage_name": "3-Technical Evaluation",
        "forecast_category": "",
        "is_closed": False,
        "is_won": False,
        "close_date": "2025-09-15",
        "close_quarter": "Q326",
        "amount": "100000.00",
        "proserv_amount": None,
        "ps_value": "12500.50",
        "ps_amount": "12500.50",
        "engagement_manager": "praman",
        "engagement_manager_name": "Priya Raman",
        "em_confidence": "Amber",
        "em_confidence_rationale": "Budget moves to next quarter",
        "scoping_issue_link": "https://gitlab.com/x/-/issues/3",
        "system_modstamp": item["system_modstamp"],
        "write_back": None,
    }


@pytest.mark.parametrize(
    ("amounts", "expected"),
    [
        ({"proserv_amount": Decimal(1), "ps_value": Decimal(2), "amount": Decimal(3)}, "1.00"),
        ({"proserv_amount": None, "ps_value": Decimal(2), "amount": Decimal(3)}, "2.00"),
        ({"proserv_amount": None, "ps_value": None, "amount": Decimal(3)}, "3.00"),
        ({"proserv_amount": None, "ps_value": None, "amount": None}, None),
        ({"proserv_amount": Decimal(0), "ps_value": Decimal(2), "amount": Decimal(3)}, "0.00"),
    ],
)
def test_the_ps_amount_is_the_first_amount_that_is_set(reader_api, amounts, expected):
    OpportunityFactory(**amounts)
    assert reader_api.get(LIST).json()["results"][0]["ps_amount"] == expected


@pytest.fixture
def three_opportunities():
    em = EngagementManagerFactory(gitlab_username="praman")
    OpportunityFactory(salesforce_id="006A00000000001AAA", engagement_manager=em, close_quarter="Q126")
    OpportunityFactory(
        salesforce_id="006A00000000002AAA",
        is_closed=True,
        is_won=True,
        em_confidence=EMConfidence.GREEN,
        close_quarter="Q226",
    )
    OpportunityFactory(
        salesforce_id="006A00000000003AAA",
        is_closed=True,
        em_confidence=EMConfidence.RED,
        em_confidence_rationale="Lost to a partner",
        close_quarter="Q226",
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("engagement_manager=praman", ["006A00000000001AAA"]),
        ("em_confidence=Green", ["006A00000000002AAA"]),
        ("em_confidence=Grey", ["006A00000000001AAA"]),
        ("close_quarter=Q226", ["006A00000000002AAA", "006A00000000003AAA"]),
        ("close_quarter=q126", ["006A00000000001AAA"]),
        ("is_closed=false", ["006A00000000001AAA"]),
        ("is_closed=true", ["006A00000000002AAA", "006A00000000003AAA"]),
        ("is_won=true", ["006A00000000002AAA"]),
        ("is_closed=true&is_won=false", ["006A00000000003AAA"]),
        ("", ["006A00000000001AAA", "006A00000000002AAA", "006A00000000003AAA"]),
    ],
)
def test_filters_narrow_the_list(reader_api, three_opportunities, query, expected):
    assert _ids(reader_api.get(f"{LIST}?{query}")) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("engagement_manager=nobody", "engagement_manager"),
        ("em_confidence=Blue", "em_confidence"),
        ("close_quarter=2026Q1", "close_quarter"),
        ("is_closed=no", "is_closed"),
        ("is_won=True", "is_won"),
        ("page_size=1000", "page_size"),
    ],
)
def test_a_bad_filter_value_gets_400_naming_the_parameter(reader_api, query, field):
    response = reader_api.get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def _count_queries(client, path: str) -> int:
    cache.clear()  # so both counts include the token lookup
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow_with_rows(reader_api):
    OpportunityFactory(engagement_manager=EngagementManagerFactory())
    one = _count_queries(reader_api, LIST)
    for _ in range(49):
        OpportunityFactory(engagement_manager=EngagementManagerFactory())
    assert _count_queries(reader_api, LIST) == one
    assert len(reader_api.get(LIST).json()["results"]) == 50


def test_items_carry_the_state_of_the_latest_change_made_in_ps_plan(reader_api):
    opportunity = OpportunityFactory(salesforce_id=OPP)
    assert reader_api.get(f"{LIST}{OPP}/").json()["write_back"] is None
    SalesforceWrite.objects.create(opportunity=opportunity, changes={}, status=WriteStatus.DELIVERED)
    failed_at = timezone.now()
    SalesforceWrite.objects.create(
        opportunity=opportunity,
        changes={},
        status=WriteStatus.FAILED,
        failed_at=failed_at,
        last_error="Not sent: someone changed this opportunity in Salesforce",
    )
    expected = {
        "status": "failed",
        "error": "Not sent: someone changed this opportunity in Salesforce",
        "since": failed_at.isoformat().replace("+00:00", "Z"),
    }
    assert reader_api.get(f"{LIST}{OPP}/").json()["write_back"] == expected
    assert reader_api.get(LIST).json()["results"][0]["write_back"] == expected


@pytest.mark.parametrize("salesforce_id", ["006000000000404AAA", "006000000000001", "not-an-id", "0" * 19])
def test_an_unknown_opportunity_is_404(reader_api, em_api, salesforce_id):
    OpportunityFactory(salesforce_id=OPP)
    assert reader_api.get(f"{LIST}{salesforce_id}/").status_code == 404
    assert (
        em_api.patch(f"{LIST}{salesforce_id}/", {"em_confidence": "Green"}, format="json").status_code == 404
    )


# --- PATCH goes through update_ps_fields and the Salesforce outbox --------------------------------


def test_patching_the_ps_fields_queues_one_salesforce_write(em_api, em_user):
    em = EngagementManagerFactory(gitlab_username="jdoe", salesforce_user_id="005000000000099XYZ")
    OpportunityFactory(salesforce_id=OPP)
    body = em_api.patch(
        f"{LIST}{OPP}/",
        {
            "engagement_manager": "jdoe",
            "em_confidence": "Red",
            "em_confidence_rationale": "Slipped to Q4",
            "scoping_issue_link": ISSUE_URL,
        },
        format="json",
    ).json()
    assert (body["engagement_manager"], body["em_confidence"], body["em_confidence_rationale"]) == (
        "jdoe",
        "Red",
        "Slipped to Q4",
    )
    assert (body["write_back"]["status"], body["write_back"]["error"]) == ("pending", None)
    write = SalesforceWrite.objects.get()
    assert write.changes == {
        "engagement_manager": "005000000000099XYZ",
        "em_confidence": "Red",
        "em_confidence_rationale": "Slipped to Q4",
        "scoping_issue_link": ISSUE_URL,
    }
    assert write.created_by == em_user
    opportunity = Opportunity.objects.get(salesforce_id=OPP)
    assert (opportunity.engagement_manager, opportunity.em_confidence) == (em, "Red")
    assert set(OpportunityChange.objects.values_list("field", "source")) == {
        ("EngagementManager", "api"),
        ("EMConfidence", "api"),
        ("EMConfidenceRationale", "api"),
        ("ScopingIssueLink", "api"),
    }


def test_red_is_accepted_without_a_rationale_when_one_is_already_stored(em_api):
    OpportunityFactory(salesforce_id=OPP, em_confidence_rationale="Known risk")
    assert em_api.patch(f"{LIST}{OPP}/", {"em_confidence": "Red"}, format="json").status_code == 200


def test_patching_nothing_new_queues_nothing(em_api):
    OpportunityFactory(salesforce_id=OPP, em_confidence=EMConfidence.GREEN)
    body = em_api.patch(f"{LIST}{OPP}/", {"em_confidence": "Green"}, format="json").json()
    assert body["write_back"] is None
    assert not SalesforceWrite.objects.exists()


def test_null_unassigns_the_engagement_manager(em_api):
    OpportunityFactory(salesforce_id=OPP, engagement_manager=EngagementManagerFactory())
    body = em_api.patch(f"{LIST}{OPP}/", {"engagement_manager": None}, format="json").json()
    assert body["engagement_manager"] is None
    assert SalesforceWrite.objects.get().changes == {"engagement_manager": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"em_confidence": "Blue"}, "em_confidence"),
        ({"em_confidence": "Red"}, "em_confidence_rationale"),
        ({"em_confidence": "Amber", "em_confidence_rationale": "   "}, "em_confidence_rationale"),
        ({"em_confidence_rationale": 7}, "em_confidence_rationale"),
        ({"engagement_manager": "nobody"}, "engagement_manager"),
        ({"engagement_manager": "nosalesforce"}, "engagement_manager"),
        ({"scoping_issue_link": "gitlab.com/issues/1"}, "scoping_issue_link"),
        ({"scoping_issue_link": "https://gitlab.com/" + "x" * 500}, "scoping_issue_link"),
        ({"scoping_issue_link": "https://gitlab.com/another/project/-/issues/12"}, "scoping_issue_link"),
        ({"scoping_issue_link": "javascript:alert(1)//gitlab.com/-/issues/1"}, "scoping_issue_link"),
    ],
)
def test_bad_input_gets_400_naming_the_field_and_changes_nothing(em_api, body, field):
    EngagementManagerFactory(gitlab_username="nosalesforce", salesforce_user_id="")
    OpportunityFactory(salesforce_id=OPP)
    response = em_api.patch(f"{LIST}{OPP}/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert Opportunity.objects.get(salesforce_id=OPP).em_confidence == "Grey"
    assert not SalesforceWrite.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_patch_answer_shows_a_delivery_that_happened_on_commit(salesforce, em_api):
    """With tasks running in-process, delivery runs when the change commits, before the answer is built."""
    salesforce_id = salesforce.add_opportunity(Scoping_Issue_Link__c="https://gitlab.com/g/p/-/issues/1")
    OpportunityFactory(salesforce_id=salesforce_id)

    body = em_api.patch(f"{LIST}{salesforce_id}/", {"em_confidence": "Green"}, format="json").json()

    assert (body["write_back"]["status"], body["write_back"]["error"]) == ("delivered", None)
    assert salesforce.get_opportunity(salesforce_id)["EM_Confidence__c"] == "Green"


def test_the_list_answers_csv_with_money_names_and_the_write_back_state(reader_api):
    OpportunityFactory(salesforce_id=OPP, name="Acme", proserv_amount=Decimal("1234.5"))
    response = reader_api.get(f"{LIST}?format=csv")
    assert response["Content-Disposition"] == 'attachment; filename="opportunities.csv"'
    header, row = list(csv.reader(io.StringIO(response.content.decode())))
    cells = dict(zip(header, row, strict=True))
    assert (cells["Salesforce id"], cells["Opportunity"], cells["PS amount"]) == (OPP, "Acme", "1234.50")
    assert cells["Write-back"] == ""
