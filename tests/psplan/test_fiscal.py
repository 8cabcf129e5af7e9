from __future__ import annotations

from datetime import date, datetime

import pytest

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
