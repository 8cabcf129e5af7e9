from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine

from psplan.fiscal import FiscalQuarter, add_months, quarter_sort_key


@pytest.mark.parametrize(
    ("day", "code"),
    [
        (date(2024, 1, 31), "Q424"),
        (date(2024, 2, 1), "Q125"),
        (date(2024, 4, 30), "Q125"),
        (date(2024, 5, 1), "Q225"),
        (date(2024, 7, 31), "Q225"),
        (date(2024, 8, 1), "Q325"),
        (date(2022, 9, 15), "Q323"),
        (date(2024, 10, 31), "Q325"),
        (date(2024, 11, 1), "Q425"),
        (date(2024, 11, 15), "Q425"),
        (date(2025, 1, 15), "Q425"),
        (date(2025, 1, 31), "Q425"),
        (date(2026, 11, 29), "Q427"),
    ],
)
def test_february_fiscal_year_is_named_by_the_year_it_ends(day, code):
    assert FiscalQuarter.of(day, start_month=2).code == code


@pytest.mark.parametrize(
    ("day", "code"),
    [
        (date(2024, 1, 1), "Q124"),
        (date(2024, 3, 31), "Q124"),
        (date(2024, 4, 1), "Q224"),
        (date(2024, 12, 31), "Q424"),
    ],
)
def test_calendar_fiscal_year(day, code):
    assert FiscalQuarter.of(day, start_month=1).code == code


@pytest.mark.parametrize(
    ("start_month", "day", "code"),
    [(7, date(2024, 7, 1), "Q125"), (7, date(2024, 6, 30), "Q424"), (10, date(2024, 12, 31), "Q125")],
)
def test_other_start_months(start_month, day, code):
    assert FiscalQuarter.of(day, start_month=start_month).code == code


def test_default_start_month_comes_from_settings(settings):
    settings.PSPLAN_FISCAL_YEAR_START_MONTH = 1
    assert FiscalQuarter.of(date(2024, 1, 31)).code == "Q124"
    settings.PSPLAN_FISCAL_YEAR_START_MONTH = 2
    assert FiscalQuarter.of(date(2024, 1, 31)).code == "Q424"


@pytest.mark.parametrize(
    ("code", "first", "last"),
    [
        ("Q125", date(2024, 2, 1), date(2024, 4, 30)),
        ("Q424", date(2023, 11, 1), date(2024, 1, 31)),
        ("Q323", date(2022, 8, 1), date(2022, 10, 31)),
    ],
)
def test_quarter_codes_parse_back_to_their_date_range(code, first, last):
    quarter = FiscalQuarter.parse(code)
    assert quarter.first_day(start_month=2) == first
    assert quarter.last_day(start_month=2) == last
    assert FiscalQuarter.of(first, start_month=2) == quarter == FiscalQuarter.of(last, start_month=2)


@pytest.mark.parametrize("bad", ["Q523", "Q023", "Q3-23", "FY23Q3", "Q32023", "", "q3"])
def test_malformed_quarter_codes_are_rejected(bad):
    with pytest.raises(ValueError, match="not a fiscal quarter"):
        FiscalQuarter.parse(bad)


def test_quarters_step_across_fiscal_years_and_sort_chronologically():
    assert FiscalQuarter.parse("Q424").next().code == "Q125"
    assert FiscalQuarter.parse("Q125").previous().code == "Q424"
    assert sorted(["Q125", "Q424", "Q324", "junk"], key=quarter_sort_key) == ["Q324", "Q424", "Q125", "junk"]


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2024, 12, 31), 2, date(2025, 2, 28)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
        (date(2024, 1, 15), -2, date(2023, 11, 15)),
        (datetime(2024, 8, 31, 9, 30), 2, datetime(2024, 10, 31, 9, 30)),
    ],
)
def test_calendar_month_arithmetic_clamps_to_month_end(start, months, expected):
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("code", "by", "expected"),
    [
        ("Q425", 1, "Q126"),
        ("Q126", -1, "Q425"),
        ("Q227", -8, "Q225"),
        ("Q101", -1, "Q400"),
        ("Q325", 0, "Q325"),
        ("Q325", 6, "Q127"),
    ],
)
def test_shifting_a_quarter_crosses_fiscal_years(code, by, expected):
    assert FiscalQuarter.parse(code).shifted(by).code == expected


def test_a_series_ends_with_its_quarter_and_runs_oldest_first():
    series = FiscalQuarter.parse("Q227").ending_series(9)
    assert [q.code for q in series] == [
        "Q225", "Q325", "Q425", "Q126", "Q226", "Q326", "Q426", "Q127", "Q227",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("start_month", "today", "code", "first", "last"),
    [
        (2, date(2026, 11, 29), "Q427", date(2026, 11, 1), date(2027, 1, 31)),
        (2, date(2027, 2, 1), "Q128", date(2027, 2, 1), date(2027, 4, 30)),
        (1, date(2026, 11, 29), "Q426", date(2026, 10, 1), date(2026, 12, 31)),
        (7, date(2026, 7, 1), "Q127", date(2026, 7, 1), date(2026, 9, 30)),
    ],
)
def test_current_quarter_follows_todays_date_and_the_start_month(
    settings, start_month, today, code, first, last
):
    settings.PSPLAN_FISCAL_YEAR_START_MONTH = start_month
    with time_machine.travel(datetime(today.year, today.month, today.day, 12, tzinfo=UTC), tick=False):
        quarter = FiscalQuarter.current()
    assert (quarter.code, quarter.first_day(), quarter.last_day()) == (code, first, last)


def test_a_quarter_starts_and_ends_at_local_midnight(settings):
    settings.TIME_ZONE = "America/New_York"
    quarter = FiscalQuarter.parse("Q427")
    starts, ends = quarter.starts_at(start_month=2), quarter.ends_at(start_month=2)
    assert (starts.isoformat(), ends.isoformat()) == (
        "2026-11-01T00:00:00-04:00",
        "2027-02-01T00:00:00-05:00",
    )
