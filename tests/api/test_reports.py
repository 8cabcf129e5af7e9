"""Win rate and forecast against data whose figures are worked out by hand below."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from opportunities.choices import EMConfidence
from opportunities.models import Opportunity
from reporting import selectors
from scoping.choices import IssueState
from scoping.models import ScopingIssue
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory
from tests.reporting import datasets as reporting_datasets

pytestmark = pytest.mark.django_db

SC = "Services Calculator"
WIN_RATE = "/api/v1/reports/win-rate/"
FORECAST = "/api/v1/reports/forecast/"


def _closed(outcome: str, quarter: str | None, em=None, segment: str | None = None):
    labels = [SC, f"proposal::{outcome}"]
    labels += [f"close_qtr::{quarter}"] if quarter else []
    labels += [f"Segment::{segment}"] if segment else []
    return ScopingIssueFactory(state=IssueState.CLOSED, labels=labels, engagement_manager=em)


@pytest.fixture
def decided_issues():
    """Q125: alee won 2 (SMB, Ent_EAST), lost 1 (SMB). Q225: nothing decided. Q325: bkim won 1, lost 3
    (MM_EMEA). One win without close_qtr, EM or segment. Totals: won 4, lost 4."""
    alee = EngagementManagerFactory(gitlab_username="alee")
    bkim = EngagementManagerFactory(gitlab_username="bkim")
    _closed("Closed_Won", "Q125", alee, "SMB")
    _closed("Closed_Won", "Q125", alee, "Ent_EAST")
    _closed("Closed_Lost", "Q125", alee, "SMB")
    _closed("Closed_Won", "Q325", bkim, "MM_EMEA")
    for _ in range(3):
        _closed("Closed_Lost", "Q325", bkim, "MM_EMEA")
    _closed("Closed_Won", None)
    # Neither won nor lost, so not in any figure: an open issue and one closed without an outcome.
    ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP", "close_qtr::Q225"], engagement_manager=alee)
    ScopingIssueFactory(state=IssueState.CLOSED, labels=[SC, "close_qtr::Q225"], engagement_manager=alee)


def _group(key, won, lost, rate):
    return {"key": key, "won": won, "lost": lost, "win_rate": rate}


def test_win_rate_by_quarter_is_chronological_with_empty_quarters_as_null(reader_api, decided_issues):
    assert reader_api.get(WIN_RATE).json() == {
        "won": 4,
        "lost": 4,
        "win_rate": 0.5,
        "groups": [
            _group("Q125", 2, 1, pytest.approx(2 / 3)),
            _group("Q225", 0, 0, None),
            _group("Q325", 1, 3, 0.25),
            _group("", 1, 0, 1.0),
        ],
    }


def test_win_rate_by_engagement_manager(reader_api, decided_issues):
    body = reader_api.get(f"{WIN_RATE}?group_by=engagement_manager").json()
    assert body["groups"] == [
        _group("alee", 2, 1, pytest.approx(2 / 3)),
        _group("bkim", 1, 3, 0.25),
        _group("", 1, 0, 1.0),
    ]
    assert (body["won"], body["lost"], body["win_rate"]) == (4, 4, 0.5)


def test_win_rate_by_segment(reader_api, decided_issues):
    assert reader_api.get(f"{WIN_RATE}?group_by=segment").json()["groups"] == [
        _group("Ent_EAST", 1, 0, 1.0),
        _group("MM_EMEA", 1, 3, 0.25),
        _group("SMB", 1, 1, 0.5),
        _group("", 1, 0, 1.0),
    ]


@pytest.mark.parametrize(
    ("query", "won", "lost", "groups"),
    [
        ("close_qtr=Q325", 1, 3, [_group("Q325", 1, 3, 0.25)]),
        ("close_qtr=q225", 0, 0, [_group("Q225", 0, 0, None)]),
        (
            "engagement_manager=alee&group_by=segment",
            2,
            1,
            [_group("Ent_EAST", 1, 0, 1.0), _group("SMB", 1, 1, 0.5)],
        ),
        ("segment=SMB&group_by=engagement_manager", 1, 1, [_group("alee", 1, 1, 0.5)]),
    ],
)
def test_win_rate_filters(reader_api, decided_issues, query, won, lost, groups):
    body = reader_api.get(f"{WIN_RATE}?{query}").json()
    assert (body["won"], body["lost"], body["groups"]) == (won, lost, groups)


def test_win_rate_with_nothing_decided_is_null_not_zero(reader_api):
    ScopingIssueFactory()
    assert reader_api.get(WIN_RATE).json() == {"won": 0, "lost": 0, "win_rate": None, "groups": []}


def test_quarters_run_across_fiscal_years_in_order(reader_api):
    _closed("Closed_Won", "Q126")
    _closed("Closed_Lost", "Q325")
    keys = [g["key"] for g in reader_api.get(WIN_RATE).json()["groups"]]
    assert keys == ["Q325", "Q425", "Q126"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=week", "group_by"),
        ("close_qtr=Q9", "close_qtr"),
        ("engagement_manager=nobody", "engagement_manager"),
        ("segment=Mars", "segment"),
    ],
)
def test_win_rate_bad_input_gets_400_naming_the_parameter(reader_api, query, field):
    response = reader_api.get(f"{WIN_RATE}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("group_by", sorted(selectors.WIN_RATE_GROUPS))
def test_win_rate_is_one_aggregate_query(decided_issues, django_assert_num_queries, group_by):
    with django_assert_num_queries(1):
        selectors.win_rate(issues=ScopingIssue.objects.current(), group_by=group_by)


# --- forecast ------------------------------------------------------------------------------------


def _opportunity(quarter, confidence, *, proserv=None, ps_value=None, amount=None, **extra):
    return OpportunityFactory(
        close_quarter=quarter,
        em_confidence=confidence,
        em_confidence_rationale="why" if confidence in ("Red", "Amber") else "",
        proserv_amount=proserv,
        ps_value=ps_value,
        amount=amount,
        **extra,
    )


@pytest.fixture
def pipeline():
    """Open: Q126 Green 10,000 (Proserv) + 5,000 (PS value); Q126 Red 40,000 (Amount); Q425 Amber
    2,500.50; Q425 empty confidence (Grey) with no amount; no quarter, Grey, 100. Closed won: left out."""
    alee = EngagementManagerFactory(gitlab_username="alee")
    _opportunity(
        "Q126",
        "Green",
        proserv=Decimal("10000"),
        ps_value=Decimal("7"),
        amount=Decimal("9"),
        engagement_manager=alee,
    )
    _opportunity("Q126", "Green", ps_value=Decimal("5000"), amount=Decimal("9"))
    _opportunity("Q126", "Red", amount=Decimal("40000"), engagement_manager=alee)
    _opportunity("Q425", "Amber", proserv=Decimal("2500.50"))
    _opportunity("Q425", "")
    _opportunity("", "Grey", amount=Decimal("100"))
    _opportunity("Q425", "Green", proserv=Decimal("99999"), is_closed=True, is_won=True)


def _money(quarter_or_confidence: dict, count: int, amount: str) -> dict:
    return {**quarter_or_confidence, "count": count, "amount": amount}


def test_forecast_is_open_pipeline_by_quarter_and_confidence(reader_api, pipeline):
    assert reader_api.get(FORECAST).json() == {
        "count": 6,
        "amount": "57600.50",
        "currency": "USD",
        "by_em_confidence": [
            _money({"em_confidence": "Grey"}, 2, "100.00"),
            _money({"em_confidence": "Red"}, 1, "40000.00"),
            _money({"em_confidence": "Amber"}, 1, "2500.50"),
            _money({"em_confidence": "Green"}, 2, "15000.00"),
        ],
        "by_close_quarter": [
            _money({"close_quarter": "Q425"}, 2, "2500.50"),
            _money({"close_quarter": "Q126"}, 3, "55000.00"),
            _money({"close_quarter": ""}, 1, "100.00"),
        ],
        "groups": [
            _money({"close_quarter": "Q425", "em_confidence": "Grey"}, 1, "0.00"),
            _money({"close_quarter": "Q425", "em_confidence": "Amber"}, 1, "2500.50"),
            _money({"close_quarter": "Q126", "em_confidence": "Red"}, 1, "40000.00"),
            _money({"close_quarter": "Q126", "em_confidence": "Green"}, 2, "15000.00"),
            _money({"close_quarter": "", "em_confidence": "Grey"}, 1, "100.00"),
        ],
    }


@pytest.mark.parametrize(
    ("query", "count", "amount"),
    [
        ("engagement_manager=alee", 2, "50000.00"),
        ("close_quarter=Q425", 2, "2500.50"),
        ("em_confidence=Green", 2, "15000.00"),
        ("close_quarter=Q226", 0, "0.00"),
    ],
)
def test_forecast_filters(reader_api, pipeline, query, count, amount):
    body = reader_api.get(f"{FORECAST}?{query}").json()
    assert (body["count"], body["amount"]) == (count, amount)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("close_quarter=next", "close_quarter"),
        ("em_confidence=Blue", "em_confidence"),
        ("engagement_manager=x", "engagement_manager"),
    ],
)
def test_forecast_bad_input_gets_400_naming_the_parameter(reader_api, query, field):
    response = reader_api.get(f"{FORECAST}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_forecast_is_one_aggregate_query(pipeline, django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.forecast(opportunities=Opportunity.objects.all())


def test_an_empty_confidence_counts_as_grey(pipeline):
    assert Opportunity.objects.filter(em_confidence="").count() == 1
    grey = selectors.forecast(opportunities=Opportunity.objects.all())["by_em_confidence"][0]
    assert (grey["em_confidence"], grey["count"]) == (EMConfidence.GREY, 2)


# --- CSV ------------------------------------------------------------------------------------------


def _rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize(
    "ask", [{"path": f"{WIN_RATE}?format=csv"}, {"path": WIN_RATE, "HTTP_ACCEPT": "text/csv"}]
)
def test_win_rate_answers_csv_by_format_or_accept_header(reader_api, decided_issues, ask):
    rows = _rows(reader_api.get(**ask))
    assert rows == [
        ["quarter", "won", "lost", "win_rate"],
        ["Q125", "2", "1", "0.6666666666666666"],
        ["Q225", "0", "0", ""],
        ["Q325", "1", "3", "0.25"],
        ["", "1", "0", "1.0"],
        ["Total", "4", "4", "0.5"],
    ]


def test_win_rate_csv_keeps_the_filters_and_grouping(reader_api, decided_issues):
    response = reader_api.get(f"{WIN_RATE}?format=csv&group_by=segment&engagement_manager=alee")
    assert _rows(response) == [
        ["segment", "won", "lost", "win_rate"],
        ["Ent_EAST", "1", "0", "1.0"],
        ["SMB", "1", "1", "0.5"],
        ["Total", "2", "1", "0.6666666666666666"],
    ]
    assert response["Content-Disposition"] == 'attachment; filename="win-rate.csv"'


@pytest.mark.parametrize(
    "ask", [{"path": f"{FORECAST}?format=csv"}, {"path": FORECAST, "HTTP_ACCEPT": "text/csv"}]
)
def test_forecast_answers_csv_with_the_currency_of_each_amount(reader_api, pipeline, ask, settings):
    settings.PSPLAN_CURRENCY = "EUR"
    assert _rows(reader_api.get(**ask)) == [
        ["close_quarter", "em_confidence", "count", "amount", "currency"],
        ["Q425", "Grey", "1", "0.00", "EUR"],
        ["Q425", "Amber", "1", "2500.50", "EUR"],
        ["Q126", "Red", "1", "40000.00", "EUR"],
        ["Q126", "Green", "2", "15000.00", "EUR"],
        ["", "Grey", "1", "100.00", "EUR"],
    ]


@pytest.mark.parametrize(
    "ask",
    [
        {"path": f"{FORECAST}?format=csv&close_quarter=next"},
        {"path": f"{FORECAST}?close_quarter=next", "HTTP_ACCEPT": "text/csv"},
    ],
)
def test_a_bad_filter_asked_as_csv_is_a_json_400_naming_the_parameter(reader_api, ask):
    response = reader_api.get(**ask)
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json() == {"close_quarter": ["Enter a fiscal quarter like Q323."]}


def test_json_stays_the_default_and_xml_is_refused(reader_api, pipeline):
    assert reader_api.get(FORECAST)["Content-Type"] == "application/json"
    assert reader_api.get(FORECAST, HTTP_ACCEPT="application/xml").status_code == 406


# --- The issue-list filters report figures drill down with ----------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("stage_in=Closed_Won,Sold", "stage_in"),
        ("close_qtr_in=Q227,Q9", "close_qtr_in"),
        ("has_engagement_manager=nope", "has_engagement_manager"),
        ("has_segment=1", "has_segment"),
    ],
)
def test_a_bad_drill_down_filter_is_a_400_naming_it_in_the_api(reader_api, query, field):
    response = reader_api.get(f"/api/v1/scoping-issues/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_api_lists_the_same_issues_as_the_page(reader_api):
    reporting_datasets.win_rate()
    body = reader_api.get("/api/v1/scoping-issues/?stage_in=Closed_Won,Closed_Lost&close_qtr_in=Q227").json()
    assert body["count"] == 7


def test_an_unknown_format_is_a_400_naming_it(reader_api):
    response = reader_api.get(f"{WIN_RATE}?format=xlsx")
    assert (response.status_code, response.json()) == (400, {"format": ["Use one of: json, csv."]})


def test_options_in_csv_describes_the_endpoint_instead_of_failing(reader_api):
    response = reader_api.options(f"{FORECAST}?format=csv")
    assert response.status_code == 200
    assert response.content.decode().splitlines()[0].startswith("name,description")
