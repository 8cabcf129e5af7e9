"""The forecast page against tests/reporting/datasets.py's hand-computed pipeline (on 2026-12-20, Q427)."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest

from opportunities.models import Opportunity
from psplan.fiscal import FiscalQuarter
from reporting import selectors
from tests.reporting import datasets
from tests.reporting.conftest import drill_links

pytestmark = pytest.mark.django_db
PAGE = "/reports/forecast/"
D = Decimal


def _cells(row) -> dict[str, tuple[int, Decimal]]:
    return {column: (money.count, money.amount) for column, money in row.by_column if money.count}


def test_the_grid_is_close_quarter_by_confidence_with_overdue_quarters_flagged(reader_client):
    datasets.pipeline()
    grid = reader_client.get(PAGE).context["report"].by_quarter
    assert grid.columns == ["Green", "Amber", "Red", "Grey"]
    assert [(row.label, row.flag) for row in grid.rows] == [
        ("Q327", "overdue"),
        ("Q427", "this quarter"),
        ("Q128", ""),
    ]
    assert [_cells(row) for row in grid.rows] == [
        {"Green": (1, D("1000"))},
        {"Green": (1, D("10000")), "Amber": (1, D("5000")), "Grey": (1, D("2500.50"))},
        {"Red": (1, D("40000")), "Grey": (1, D("700"))},
    ]
    assert [(row.total.count, row.total.amount) for row in grid.rows] == [
        (1, D("1000")),
        (3, D("17500.50")),
        (2, D("40700")),
    ]
    assert (grid.total.count, grid.total.amount) == (6, D("59200.50"))


def test_by_engagement_manager_beside_salesforces_forecast_category(reader_client):
    datasets.pipeline()
    report = reader_client.get(PAGE).context["report"]
    side_by_side = [
        (by_confidence.label, by_confidence.flag, _cells(by_confidence), _cells(by_category))
        for by_confidence, by_category in report.em_side_by_side
    ]
    assert side_by_side == [
        (
            "Priya Raman",
            "",
            {"Green": (1, D("10000")), "Amber": (1, D("5000")), "Red": (1, D("40000"))},
            {"Commit": (1, D("10000")), "Best Case": (1, D("5000")), "Pipeline": (1, D("40000"))},
        ),
        (
            "Tom Becker",
            "",
            {"Green": (1, D("1000")), "Grey": (1, D("2500.50"))},
            {"Commit": (1, D("1000")), "Pipeline": (1, D("2500.50"))},
        ),
        ("No engagement manager", "unassigned", {"Grey": (1, D("700"))}, {"Omitted": (1, D("700"))}),
    ]
    assert report.by_em_category.columns == ["Commit", "Best Case", "Pipeline", "Omitted"]


def test_em_confidence_against_forecast_category(reader_client):
    datasets.pipeline()
    grid = reader_client.get(PAGE).context["report"].confidence_vs_category
    assert {row.label: _cells(row) for row in grid.rows} == {
        "Green": {"Commit": (2, D("11000"))},
        "Amber": {"Best Case": (1, D("5000"))},
        "Red": {"Pipeline": (1, D("40000"))},
        "Grey": {"Pipeline": (1, D("2500.50")), "Omitted": (1, D("700"))},
    }


def test_the_end_of_quarter_view_lists_what_closes_this_quarter_with_grey_flagged(reader_client):
    team = datasets.pipeline()
    response = reader_client.get(PAGE)
    this_quarter = response.context["report"].this_quarter
    assert _cells(this_quarter) == {
        "Green": (1, D("10000")),
        "Amber": (1, D("5000")),
        "Grey": (1, D("2500.50")),
    }
    closing = list(response.context["closing"])
    assert [deal["salesforce_id"] for deal in closing] == [
        team["green"].salesforce_id,
        team["amber"].salesforce_id,
        team["grey"].salesforce_id,
    ]
    page = response.content.decode()
    assert "Closing this quarter (Q427)" in page
    assert re.search(r"Hooli - CI/CD.*?EM has no visibility", page, re.S)
    assert "Grey</span> EM has no visibility" in page


def test_amounts_are_in_the_configured_currency(reader_client, settings):
    datasets.pipeline()
    assert "59,201 <small>USD</small>" in reader_client.get(PAGE).content.decode()
    settings.PSPLAN_CURRENCY = "EUR"
    assert "59,201 <small>EUR</small>" in reader_client.get(PAGE).content.decode()
    rows = _csv(reader_client, "by_quarter")
    assert rows[1] == ["Q327", "overdue", "Green", "1", "1000.00", "EUR"]


def test_the_engagement_manager_filter_is_a_menu_of_names(reader_client):
    datasets.pipeline()
    page = reader_client.get(PAGE).content.decode()
    menu = re.search(r'<select name="engagement_manager">(.*?)</select>', page, re.S).group(1)
    assert re.findall(r">([^<]+)</option>", menu) == ["Everyone", "Priya Raman", "Tom Becker"]
    assert '<input type="text" name="engagement_manager"' not in page


def test_filtering_by_engagement_manager_narrows_every_figure(reader_client):
    datasets.pipeline()
    report = reader_client.get(f"{PAGE}?engagement_manager=tbecker").context["report"]
    assert (report.by_quarter.total.count, report.by_quarter.total.amount) == (2, D("3500.50"))
    assert [row.label for row in report.by_em.rows] == ["Tom Becker"]


def test_every_count_links_to_the_opportunities_it_counts(reader_client):
    datasets.pipeline()
    links = drill_links(reader_client.get(PAGE).content)
    assert len(links) > 15
    for url, shown in links:
        assert url.startswith("/opportunities/?"), url
        assert reader_client.get(url).context["page"].paginator.count == int(shown), url


def _csv(client, table: str, query: str = "") -> list[list[str]]:
    response = client.get(f"{PAGE}?csv={table}{query}")
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_grid_downloads_as_one_row_per_cell(reader_client):
    datasets.pipeline()
    assert _csv(reader_client, "by_quarter") == [
        ["Close quarter", "Flag", "EM confidence", "Opportunities", "PS amount", "Currency"],
        ["Q327", "overdue", "Green", "1", "1000.00", "USD"],
        ["Q427", "this quarter", "Green", "1", "10000.00", "USD"],
        ["Q427", "this quarter", "Amber", "1", "5000.00", "USD"],
        ["Q427", "this quarter", "Grey", "1", "2500.50", "USD"],
        ["Q128", "", "Red", "1", "40000.00", "USD"],
        ["Q128", "", "Grey", "1", "700.00", "USD"],
    ]


def test_the_deals_closing_this_quarter_download_with_the_page_filters(reader_client):
    datasets.pipeline()
    rows = _csv(reader_client, "closing_this_quarter", "&engagement_manager=praman")
    assert [row[1] for row in rows] == ["Opportunity", "Acme - Migration", "Globex - QuickStart"]
    assert rows[1][-4:] == ["Commit", "10000.00", "USD", ""]


@pytest.mark.parametrize(
    "table",
    [
        "by_quarter",
        "closing_this_quarter",
        "by_engagement_manager",
        "by_forecast_category",
        "confidence_vs_category",
    ],
)
def test_every_forecast_table_has_a_download_link(reader_client, table):
    datasets.pipeline()
    assert f'href="?csv={table}"' in reader_client.get(PAGE).content.decode()


def test_the_report_is_four_aggregate_queries(django_assert_num_queries):
    datasets.pipeline()
    with django_assert_num_queries(4):
        selectors.forecast_report(
            opportunities=Opportunity.objects.all(), current=FiscalQuarter.parse("Q427")
        )


@pytest.mark.parametrize("more", [0, 30])
def test_the_page_query_count_does_not_grow_with_the_pipeline(reader_client, django_assert_num_queries, more):
    team = datasets.pipeline()
    for index in range(more):
        datasets._deal(
            team["tom"], f"2027-0{index % 6 + 1}-15", ["Green", "Red", "Grey"][index % 3], category="Commit"
        )
    # Session, user, role, the EM menu, four figures, and the deals closing this quarter.
    with django_assert_num_queries(9):
        reader_client.get(PAGE)
