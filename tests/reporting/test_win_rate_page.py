"""The win-rate page against tests/reporting/datasets.py's hand-computed window (Q425 to Q427)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import time_machine

from psplan.fiscal import FiscalQuarter
from reporting import selectors
from scoping.choices import Stage
from scoping.models import ScopingIssue
from tests.reporting import datasets
from tests.reporting.conftest import drill_links

pytestmark = pytest.mark.django_db
PAGE = "/reports/win-rate/"
WINDOW = ["Q425", "Q126", "Q226", "Q326", "Q426", "Q127", "Q227", "Q327", "Q427"]


def _figures(tallies) -> list[tuple[int, int]]:
    return [(tally.won, tally.lost) for tally in tallies]


def _row(rows, label):
    return next(row for row in rows if row.label == label)


def test_the_window_is_the_current_quarter_and_the_eight_before_it_with_hand_computed_figures(reader_client):
    datasets.win_rate()
    window = reader_client.get(PAGE).context["window"]
    assert window.quarters == WINDOW
    assert _figures(window.overall) == [(0, 0)] * 3 + [(1, 0), (0, 0), (0, 0), (3, 4), (0, 0), (1, 0)]
    assert [tally.win_rate for tally in window.overall][-3:] == [pytest.approx(3 / 7), None, 1.0]
    assert (window.total.won, window.total.lost, window.total.win_rate) == (5, 4, pytest.approx(5 / 9))


def test_each_engagement_manager_is_a_row_by_name_with_the_unassigned_last_and_flagged(reader_client):
    datasets.win_rate()
    rows = reader_client.get(PAGE).context["window"].by_engagement_manager
    assert [(row.label, row.flag) for row in rows] == [
        ("Nadia Unlinked", "unlinked"),
        ("Priya Raman", ""),
        ("Tom Becker", ""),
        ("No engagement manager", "unassigned"),
    ]
    totals = {row.label: (row.total.won, row.total.lost, row.total.win_rate) for row in rows}
    assert totals == {
        "Nadia Unlinked": (1, 0, 1.0),
        "Priya Raman": (3, 1, 0.75),
        "Tom Becker": (0, 2, 0.0),
        "No engagement manager": (1, 1, 0.5),
    }
    priya = _row(rows, "Priya Raman")
    assert _figures(priya.cells)[WINDOW.index("Q227")] == (2, 1)
    assert _figures(priya.cells)[WINDOW.index("Q427")] == (1, 0)


def test_each_segment_is_a_row_and_issues_without_one_are_a_flagged_row(reader_client):
    datasets.win_rate()
    rows = reader_client.get(PAGE).context["window"].by_segment
    assert [row.label for row in rows][-2:] == ["SMB", "No segment"]
    assert len(rows) == 10  # the nine segments, each shown even without decisions, and "No segment"
    smb = _row(rows, "SMB")
    assert (_figures(smb.cells)[WINDOW.index("Q227")], _figures(smb.cells)[WINDOW.index("Q326")]) == (
        (2, 2),
        (1, 0),
    )
    assert (smb.total.won, smb.total.lost) == (3, 2)
    assert (_row(rows, "No segment").flag, _row(rows, "Mid-Market EMEA").total.lost) == ("no segment", 2)


def test_a_quarter_without_decisions_shows_a_dash_and_a_quarter_lost_entirely_shows_zero_percent(
    reader_client,
):
    datasets.win_rate()
    response = reader_client.get(PAGE)
    tom = _row(response.context["window"].by_engagement_manager, "Tom Becker")
    assert tom.cells[0].win_rate is None and tom.total.win_rate == 0.0
    page = response.content.decode()
    assert '<span class="rate">—</span>' in page
    assert ">0%</a>" in page  # Tom's Q227: two losses


def test_nothing_decided_at_all_is_a_dash_everywhere_not_zero_percent(reader_client):
    datasets.people()
    response = reader_client.get(PAGE)
    window = response.context["window"]
    assert (window.total.won, window.total.lost, window.total.win_rate) == (0, 0, None)
    assert window.by_engagement_manager == []
    assert not re.search(r'class="rate">(<a [^>]*>)?0%', response.content.decode())


def test_every_figure_links_to_exactly_the_issues_it_counts(reader_client):
    datasets.win_rate()
    links = drill_links(reader_client.get(PAGE).content)
    assert len(links) > 30
    for url, shown in links:
        listed = reader_client.get(url).context["page"].paginator.object_list
        stages = [issue["stage"] for issue in listed]
        if shown.endswith("%"):
            won, decided = stages.count(Stage.CLOSED_WON), len(stages)
            assert decided and f"{round(won / decided * 100)}%" == shown, url
            assert set(stages) <= {Stage.CLOSED_WON, Stage.CLOSED_LOST}, url
        else:
            assert len(stages) == int(shown), url


def test_a_won_figure_lists_the_issues_behind_it(reader_client):
    datasets.win_rate()
    links = dict(drill_links(reader_client.get(PAGE).content))
    url = next(
        u
        for u in links
        if "engagement_manager=praman" in u and "close_qtr=Q227" in u and "stage=Closed_Won" in u
    )
    assert url == "/issues/?engagement_manager=praman&close_qtr=Q227&stage=Closed_Won"
    listed = reader_client.get(url).context["page"].paginator.object_list
    assert sorted(issue["segment"] for issue in listed) == ["SMB", "SMB"]


def test_people_are_shown_by_name_and_the_definition_is_on_the_page(reader_client):
    datasets.win_rate()
    page = reader_client.get(PAGE).content.decode()
    assert '<th scope="row">Priya Raman' in page and '<th scope="row">praman' not in page
    assert "Win rate = won ÷ (won + lost)" in page
    assert "has no win rate (“—”), not 0 %" in page
    assert "no activity for 2 months" in page


def test_filters_narrow_every_figure_and_the_links_keep_them(reader_client):
    datasets.win_rate()
    response = reader_client.get(f"{PAGE}?segment=SMB&quarter=Q227")
    window = response.context["window"]
    assert window.quarters == ["Q225", "Q325", *WINDOW[:-2]]
    # SMB from Q225 to Q227: Priya's win in Q325 comes into the window; Q326 1-0; Q227 2-2.
    assert (window.total.won, window.total.lost) == (4, 2)
    assert [row.label for row in window.by_engagement_manager] == [
        "Nadia Unlinked",
        "Priya Raman",
        "No engagement manager",
    ]
    assert all("segment=SMB" in url for url, _ in drill_links(response.content))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("quarter=Q3-27", "Enter a fiscal quarter like Q323."),
        ("engagement_manager=nobody", "No engagement manager has the GitLab username"),
        ("segment=Mars", "Select a valid choice."),
    ],
)
def test_bad_filters_are_explained_not_an_error_page(reader_client, query, message):
    datasets.win_rate()
    response = reader_client.get(f"{PAGE}?{query}")
    assert response.status_code == 200 and response.context["window"] is None
    assert message in response.content.decode()
    assert reader_client.get(f"{PAGE}?{query}&csv=by_quarter").status_code == 400


@pytest.mark.parametrize(
    ("moment", "last_quarter"),
    [
        (datetime(2027, 1, 31, 23, 59, tzinfo=UTC), "Q427"),
        (datetime(2027, 2, 1, 0, 0, tzinfo=UTC), "Q128"),
    ],
)
def test_the_window_moves_on_at_midnight_on_the_first_day_of_the_fiscal_quarter(
    reader_client, reader, moment, last_quarter
):
    with time_machine.travel(moment, tick=False):
        reader_client.force_login(reader)
        window = reader_client.get(PAGE).context["window"]
    assert window.quarters[-1] == last_quarter and len(window.quarters) == 9


def test_with_a_calendar_fiscal_year_the_window_follows_calendar_quarters(reader_client, settings):
    settings.PSPLAN_FISCAL_YEAR_START_MONTH = 1
    datasets.decided("Closed_Won", "Q426")  # Q4 of calendar 2026: October to December
    window = reader_client.get(PAGE).context["window"]
    assert (window.quarters[0], window.quarters[-1]) == ("Q424", "Q426")
    assert (window.overall[-1].won, window.total.won) == (1, 1)


def test_each_table_downloads_as_csv_with_the_page_filters(reader_client):
    datasets.win_rate()
    response = reader_client.get(f"{PAGE}?csv=by_engagement_manager&engagement_manager=praman")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="win-rate-by_engagement_manager.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["Engagement manager", "GitLab username", "Flag", "Quarter", "Won", "Lost", "Win rate"]
    assert rows[1] == ["Priya Raman", "praman", "", "Q425", "0", "0", ""]
    assert ["Priya Raman", "praman", "", "Q227", "2", "1", "0.6667"] in rows
    assert rows[-1] == ["Priya Raman", "praman", "", "Q425-Q427", "3", "1", "0.75"]
    assert len(rows) == 1 + 10


@pytest.mark.parametrize("table", ["by_quarter", "by_engagement_manager", "by_segment"])
def test_every_win_rate_table_has_a_download_link(reader_client, table):
    datasets.win_rate()
    assert f'href="?csv={table}"' in reader_client.get(PAGE).content.decode()


def test_an_unknown_table_is_not_found(reader_client):
    assert reader_client.get(f"{PAGE}?csv=nope").status_code == 404


def test_the_window_is_three_aggregate_queries_whatever_the_data(django_assert_num_queries):
    datasets.win_rate()
    issues = ScopingIssue.objects.current()
    with django_assert_num_queries(3):
        selectors.win_rate_window(issues=issues, through=FiscalQuarter.parse("Q427"))


@pytest.mark.parametrize("extra_quarters", [0, 1])
def test_the_page_query_count_does_not_grow_with_the_data(
    reader_client, django_assert_num_queries, extra_quarters
):
    datasets.win_rate()
    if extra_quarters:
        for index in range(40):
            datasets.decided("Closed_Won", WINDOW[index % 9], segment="SMB")
    # Session, user, role, the EM filter's check, the EM menu, and the three figures.
    with django_assert_num_queries(8):
        reader_client.get(f"{PAGE}?engagement_manager=praman")
