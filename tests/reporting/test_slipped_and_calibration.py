"""Slipped deals and EM confidence calibration, read from the opportunity history of datasets.py."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from opportunities.models import Opportunity
from psplan.fiscal import FiscalQuarter
from reporting import deals
from tests.factories import UserFactory
from tests.reporting import datasets

pytestmark = pytest.mark.django_db
SLIPPED = "/reports/slipped-deals/"
CALIBRATION = "/reports/calibration/"


def _csv(client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- Slipped deals ----------------------------------------------------------------------------------


def test_deals_whose_close_date_left_the_quarter_after_it_began_are_listed_once_latest_move_first(
    reader_client,
):
    datasets.slipped()
    response = reader_client.get(SLIPPED)
    rows = [
        (row["name"], row["moved_from"], row["moved_to"], row["changed_by"])
        for row in response.context["slipped"].deals
    ]
    assert rows == [
        ("B - Globex", "2026-12-20", "2027-04-10", "Dana Sales"),
        ("A - Acme", "2026-12-15", "2027-02-20", "Salesforce"),
        ("F - Wayne", "2027-01-10", "2027-02-10", "Salesforce"),
    ]
    assert (response.context["slipped"].count, response.context["slipped"].amount) == (3, Decimal("30500"))


def test_who_moved_the_date_is_the_person_when_recorded_else_the_system(reader_client):
    team = datasets.slipped()
    person = UserFactory(username="sam")
    datasets.moved(team["A"], "2026-11-12", "2027-01-02", "2027-02-20", source="page", actor=person)

    def who() -> dict[str, str]:
        return {row["name"]: row["changed_by"] for row in reader_client.get(SLIPPED).context["slipped"].deals}

    assert who() == {"A - Acme": "sam", "B - Globex": "Dana Sales", "F - Wayne": "Salesforce"}
    person.first_name, person.last_name = "Sam", "Seller"
    person.save()
    assert who()["A - Acme"] == "Sam Seller"


def test_a_deal_that_came_back_into_the_quarter_says_so(reader_client):
    datasets.slipped()
    page = reader_client.get(SLIPPED).content.decode()
    assert page.count("back in the quarter") == 1
    assert (
        '2026-12-20 <small class="muted">Q427</small> → 2027-04-10 <small class="muted">Q128</small>' in page
    )


def test_another_quarter_has_its_own_slipped_deals(reader_client):
    datasets.slipped()
    response = reader_client.get(f"{SLIPPED}?quarter=Q327")
    assert [row["name"] for row in response.context["slipped"].deals] == ["H - Tyrell"]
    assert response.context["slipped"].count == 1


def test_the_engagement_manager_filter_narrows_slipped_deals(reader_client):
    datasets.slipped()
    response = reader_client.get(f"{SLIPPED}?engagement_manager=praman")
    assert [row["name"] for row in response.context["slipped"].deals] == ["A - Acme", "F - Wayne"]
    assert (response.context["slipped"].count, response.context["slipped"].amount) == (2, Decimal("10500"))


def test_slipped_deals_download_with_from_to_and_who(reader_client):
    team = datasets.slipped()
    rows = _csv(reader_client, f"{SLIPPED}?csv=slipped&engagement_manager=tbecker")
    assert (
        rows[0][-7:] == ["Moved from", "Moved to", "Moved at", "Changed by", "PS amount", "Currency"][-7:]
        or True
    )
    header = rows[0]
    assert header == [
        "Salesforce id", "Opportunity", "Account", "Engagement manager", "Close date", "Close quarter", "Stage",
        "Moved from", "Moved to", "Moved at", "Changed by", "PS amount", "Currency",
    ]  # fmt: skip
    assert rows[1] == [
        team["B"].salesforce_id, "B - Globex", team["B"].account.name, "Tom Becker", "2027-04-10", "Q128",
        "3-Technical Evaluation", "2026-12-20", "2027-04-10", "2026-12-01T09:00:00+00:00", "Dana Sales",
        "20000.00", "USD",
    ]  # fmt: skip
    assert len(rows) == 2


def test_slipped_deals_and_their_totals_come_from_one_query_that_counts_past_the_rows_shown(
    django_assert_num_queries,
):
    datasets.slipped()
    with django_assert_num_queries(1):
        found = deals.slipped(
            opportunities=Opportunity.objects.all(), quarter=FiscalQuarter.parse("Q427"), limit=1
        )
    assert [deal["name"] for deal in found.deals] == ["B - Globex"]
    assert (found.count, found.amount) == (3, Decimal("30500"))


@pytest.mark.parametrize("limit", [None, 10])
def test_a_deal_that_slips_between_two_reads_of_the_same_quarter_is_in_the_second(limit):
    """The quarter's query is built once and shared: each read runs it afresh."""
    team = datasets.slipped()
    quarter = FiscalQuarter.parse("Q427")
    before = deals.slipped(opportunities=Opportunity.objects.all(), quarter=quarter, limit=limit)
    datasets.moved(team["A"], "2026-12-02", "2027-01-05", "2027-03-01")
    datasets.moved(team["G"], "2026-12-03", "2027-01-20", "2027-05-01")
    after = deals.slipped(opportunities=Opportunity.objects.all(), quarter=quarter, limit=limit)

    assert before.count == 3 and after.count == 4
    assert [deal["name"] for deal in after.deals][:2] == ["G - Umbrella", "A - Acme"]


def test_a_quarter_nothing_slipped_out_of_counts_zero_and_says_so(reader_client):
    datasets.slipped()
    response = reader_client.get(f"{SLIPPED}?quarter=Q126")
    assert response.context["slipped"] == deals.Slipped(count=0, amount=Decimal("0"), deals=[])
    assert "No deal slipped out of Q126." in response.content.decode()


@pytest.mark.parametrize("more", [0, 25])
def test_the_slipped_page_query_count_does_not_grow_with_the_history(
    reader_client, django_assert_num_queries, more
):
    team = datasets.slipped()
    for index in range(more):
        datasets.moved(team["A"], "2026-11-11", "2027-01-01", f"2027-03-{index + 1:02d}")
    # Session, user, role, the EM menu, and the deals with their totals.
    with django_assert_num_queries(5):
        reader_client.get(SLIPPED)


# --- Calibration ------------------------------------------------------------------------------------


def _outcomes(rows) -> dict[str, tuple[int, int, int]]:
    return {found.confidence: found.counts for found in rows}


def test_calibration_uses_the_confidence_and_close_date_of_the_first_day_of_the_quarter(reader_client):
    datasets.calibration()
    report = reader_client.get(CALIBRATION).context["report"]
    assert report.quarters == ["Q426", "Q127", "Q227", "Q327"]
    assert _outcomes(report.overall) == {
        "Green": (1, 1, 1),
        "Amber": (1, 1, 0),
        "Red": (1, 0, 1),
        "Grey": (1, 0, 0),
    }
    held = {found.confidence: (found.held, found.total) for found in report.overall}
    assert held == {"Green": (1, 3), "Amber": (2, 2), "Red": (1, 2), "Grey": (None, 1)}


def test_calibration_per_engagement_manager_with_deals_without_one_flagged(reader_client):
    datasets.calibration()
    people = reader_client.get(CALIBRATION).context["report"].by_engagement_manager
    assert [(person.label, person.flag) for person in people] == [
        ("Priya Raman", ""),
        ("Tom Becker", ""),
        ("No engagement manager", "unassigned"),
    ]
    assert _outcomes(people[0].rows) == {
        "Green": (1, 1, 1),
        "Amber": (1, 1, 0),
        "Red": (0, 0, 0),
        "Grey": (0, 0, 0),
    }
    assert _outcomes(people[1].rows)["Red"] == (1, 0, 1)
    assert _outcomes(people[2].rows)["Grey"] == (1, 0, 0)


def test_an_earlier_window_counts_only_the_deals_due_in_its_quarters(reader_client):
    datasets.calibration()
    report = reader_client.get(f"{CALIBRATION}?quarter=Q227").context["report"]
    # Q326 to Q227: X1 (Green, won on 2025-10-01 in Q326) and S1 (due on 2026-07-10, Green then, won
    # on 2026-08-20, after Q227 ended).
    assert report.quarters == ["Q326", "Q426", "Q127", "Q227"]
    assert _outcomes(report.overall)["Green"] == (1, 1, 0)
    assert sum(found.total for found in report.overall) == 2


def test_the_deals_behind_the_calibration_download_one_row_per_quarter_due(reader_client):
    team = datasets.calibration()
    rows = _csv(reader_client, f"{CALIBRATION}?csv=deals")
    assert rows[0] == [
        "Due in quarter", "Salesforce id", "Opportunity", "Engagement manager",
        "EM confidence at the start of the quarter", "Close date at the start of the quarter", "Closed on", "Outcome",
    ]  # fmt: skip
    by_deal = {(row[0], row[1]): (row[4], row[5], row[7]) for row in rows[1:]}
    assert by_deal[("Q227", team["S1"].salesforce_id)] == ("Green", "2026-07-10", "Won later")
    assert by_deal[("Q327", team["S1"].salesforce_id)] == ("Amber", "2026-08-20", "Won in the quarter")
    assert by_deal[("Q327", team["G2"].salesforce_id)] == ("Green", "2026-10-20", "Lost")
    assert by_deal[("Q327", team["Grey1"].salesforce_id)] == ("Grey", "2026-08-20", "Won in the quarter")
    assert len(by_deal) == 8  # seven due in Q327, and S1 in Q227 too
    assert not any(team[name].salesforce_id in {key[1] for key in by_deal} for name in ("X1", "X2", "X3"))


def test_the_calibration_tables_download_with_held_rates(reader_client):
    datasets.calibration()
    rows = _csv(reader_client, f"{CALIBRATION}?csv=overall")
    assert rows == [
        [
            "EM confidence at the start of the quarter",
            "Won in the quarter",
            "Won later",
            "Lost",
            "Closed",
            "Held",
            "Held rate",
        ],
        ["Green", "1", "1", "1", "3", "1", "0.3333"],
        ["Amber", "1", "1", "0", "2", "2", "1.0"],
        ["Red", "1", "0", "1", "2", "1", "0.5"],
        ["Grey", "1", "0", "0", "1", "", ""],
    ]
    by_em = _csv(reader_client, f"{CALIBRATION}?csv=by_engagement_manager&engagement_manager=tbecker")
    assert by_em[1:] == [
        ["Tom Becker", "Green", "0", "0", "0", "0", "0", ""],
        ["Tom Becker", "Amber", "0", "0", "0", "0", "0", ""],
        ["Tom Becker", "Red", "1", "0", "1", "2", "1", "0.5"],
        ["Tom Becker", "Grey", "0", "0", "0", "0", "", ""],
    ]


def test_calibration_over_four_quarters_is_one_query(django_assert_num_queries):
    datasets.calibration()
    quarters = FiscalQuarter.parse("Q327").ending_series(4)
    with django_assert_num_queries(1):
        deals.calibration(opportunities=Opportunity.objects.all(), quarters=quarters)


@pytest.mark.parametrize("more", [0, 20])
def test_the_calibration_page_query_count_does_not_grow_with_the_deals(
    reader_client, django_assert_num_queries, more
):
    team = datasets.calibration()
    for index in range(more):
        deal = datasets._deal(
            team["tom"], f"2026-09-{index + 1:02d}", "Green", is_closed=True, is_won=index % 2 == 0
        )
        datasets.moved(deal, "2026-08-02", "Amber", "Green", field="EMConfidence")
    # Session, user, role, the EM menu and the one calibration query.
    with django_assert_num_queries(5):
        reader_client.get(CALIBRATION)
