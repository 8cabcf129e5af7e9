"""Leadership report pages: win rate, forecast and data quality, with the API's numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scoping.choices import IssueState, ProblemKind
from scoping.services import refresh_issues
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def _decided(stage: str, quarter: str, **fields):
    return ScopingIssueFactory(
        state=IssueState.CLOSED, labels=[SC, f"proposal::{stage}", f"close_qtr::{quarter}"], **fields
    )


def test_win_rate_page_shows_each_quarter_in_order_with_an_empty_quarter_as_no_decisions(reader_client):
    _decided("Closed_Won", "Q425")
    _decided("Closed_Won", "Q425")
    _decided("Closed_Lost", "Q425")
    _decided("Closed_Lost", "Q226")
    response = reader_client.get("/reports/win-rate/")
    report = response.context["report"]
    assert (report["won"], report["lost"]) == (2, 2)
    assert [(g["key"], g["won"], g["lost"]) for g in report["groups"]] == [
        ("Q425", 2, 1),
        ("Q126", 0, 0),
        ("Q226", 0, 1),
    ]
    html = response.content.decode()
    assert "67%" in html and "no decisions" in html and "50%" in html


def test_win_rate_page_groups_by_engagement_manager_and_filters_by_quarter(reader_client):
    priya = EngagementManagerFactory(name="Priya", gitlab_username="praman")
    _decided("Closed_Won", "Q425", engagement_manager=priya)
    _decided("Closed_Lost", "Q126", engagement_manager=priya)
    response = reader_client.get("/reports/win-rate/?group_by=engagement_manager&close_qtr=Q425")
    assert [(g["key"], g["won"], g["lost"]) for g in response.context["report"]["groups"]] == [
        ("praman", 1, 0)
    ]


def test_win_rate_page_says_what_is_wrong_with_a_malformed_quarter(reader_client):
    response = reader_client.get("/reports/win-rate/?close_qtr=Q3-23")
    assert response.status_code == 200
    assert response.context["report"] is None
    assert "Enter a fiscal quarter like Q323." in response.content.decode()


def test_forecast_page_sums_the_ps_amount_of_open_opportunities_by_confidence(reader_client):
    OpportunityFactory(em_confidence="Green", proserv_amount=Decimal("1000"), close_quarter="Q427")
    OpportunityFactory(
        em_confidence="Green", proserv_amount=None, ps_value=Decimal("500"), close_quarter="Q427"
    )
    OpportunityFactory(em_confidence="Red", proserv_amount=Decimal("700"), close_quarter="Q128")
    OpportunityFactory(is_closed=True, em_confidence="Green", proserv_amount=Decimal("9999"))
    report = reader_client.get("/reports/forecast/").context["report"]
    assert (report["count"], report["amount"]) == (3, Decimal("2200"))
    by_confidence = {t["em_confidence"]: (t["count"], t["amount"]) for t in report["by_em_confidence"]}
    assert by_confidence == {"Red": (1, Decimal("700")), "Green": (2, Decimal("1500"))}


def test_data_quality_page_counts_problems_by_kind_and_lists_unlinked_ems(reader_client):
    ScopingIssueFactory(labels=[SC, "Segment::Ent_LATAM"])
    ScopingIssueFactory(labels=[SC, "close_qtr::Q3-23"])
    ScopingIssueFactory(labels=[SC, "close_qtr::FY23"])
    refresh_issues()
    EngagementManagerFactory(name="Unlinked Person", gitlab_username="")
    response = reader_client.get("/reports/data-quality/")
    counts = {row["kind"]: row["count"] for row in response.context["summary"]}
    assert counts == {ProblemKind.MALFORMED_CLOSE_QTR: 2, ProblemKind.UNKNOWN_SEGMENT: 1}
    assert response.context["total"] == 3
    assert "Unlinked Person" in response.content.decode()
    filtered = reader_client.get(f"/reports/data-quality/?kind={ProblemKind.UNKNOWN_SEGMENT}")
    assert [p.kind for p in filtered.context["page"]] == [ProblemKind.UNKNOWN_SEGMENT]


def test_data_quality_page_query_count_does_not_grow_with_problems(reader_client):
    ScopingIssueFactory(labels=[SC, "Segment::Ent_LATAM"])
    refresh_issues()
    with CaptureQueriesContext(connection) as one:
        reader_client.get("/reports/data-quality/")
    for _ in range(20):
        ScopingIssueFactory(labels=[SC, "Segment::Ent_LATAM"], opportunity=OpportunityFactory())
    refresh_issues()
    with CaptureQueriesContext(connection) as many:
        reader_client.get("/reports/data-quality/")
    assert len(many) == len(one)


@pytest.mark.parametrize("path", ["/reports/win-rate/?group_by=engagement_manager", "/reports/forecast/"])
def test_report_page_query_count_does_not_grow_with_rows(reader_client, path):
    em = EngagementManagerFactory()
    _decided("Closed_Won", "Q425", engagement_manager=em)
    OpportunityFactory(engagement_manager=em)
    with CaptureQueriesContext(connection) as one:
        reader_client.get(path)
    for index in range(20):
        em = EngagementManagerFactory()
        _decided("Closed_Lost", f"Q{index % 4 + 1}26", engagement_manager=em)
        OpportunityFactory(engagement_manager=em, em_confidence="Green")
    with CaptureQueriesContext(connection) as many:
        reader_client.get(path)
    assert len(many) == len(one)
