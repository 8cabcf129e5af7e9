"""The CSV of every report table: its columns, and its figures as one row per cell (long form, so a
spreadsheet can pivot it back into the page's grid)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from psplan.csv_export import Column
from reporting.deals import OUTCOMES, Calibration, Outcomes
from reporting.selectors import Grid, Tally, TallyRow, WinRateWindow

WIN_RATE = (Column("won", "Won"), Column("lost", "Lost"), Column("win_rate", "Win rate"))
MONEY = (Column("count", "Opportunities"), Column("amount", "PS amount"), Column("currency", "Currency"))


def _tally(tally: Tally) -> dict[str, Any]:
    rate = tally.win_rate
    return {"won": tally.won, "lost": tally.lost, "win_rate": None if rate is None else round(rate, 4)}


def win_rate_by_quarter(window: WinRateWindow) -> Iterator[dict[str, Any]]:
    for code, tally in zip(window.quarters, window.overall, strict=True):
        yield {"quarter": code, **_tally(tally)}
    yield {"quarter": _span(window), **_tally(window.total)}


def win_rate_matrix(window: WinRateWindow, rows: list[TallyRow]) -> Iterator[dict[str, Any]]:
    for row in rows:
        for code, tally in zip(window.quarters, row.cells, strict=True):
            yield {"key": row.key, "label": row.label, "flag": row.flag, "quarter": code, **_tally(tally)}
        yield {
            "key": row.key,
            "label": row.label,
            "flag": row.flag,
            "quarter": _span(window),
            **_tally(row.total),
        }


def _span(window: WinRateWindow) -> str:
    return f"{window.quarters[0]}-{window.quarters[-1]}" if window.quarters else ""


WIN_RATE_BY_QUARTER = (Column("quarter", "Quarter"), *WIN_RATE)
WIN_RATE_BY_EM = (
    Column("label", "Engagement manager"),
    Column("key", "GitLab username"),
    Column("flag", "Flag"),
    Column("quarter", "Quarter"),
    *WIN_RATE,
)
WIN_RATE_BY_SEGMENT = (
    Column("label", "Segment"),
    Column("key", "Segment label"),
    Column("quarter", "Quarter"),
    *WIN_RATE,
)


def grid_rows(grid: Grid, *, currency: str) -> Iterator[dict[str, Any]]:
    """One row per non-empty cell of a grid: row label, flag, column, count, amount."""
    for row in grid.rows:
        for column, money in zip(grid.columns, row.cells, strict=True):
            if money.count:
                yield {
                    "row": row.label,
                    "flag": row.flag,
                    "column": column,
                    "count": money.count,
                    "amount": cents(money.amount),
                    "currency": currency,
                }


def grid_columns(row: str, column: str) -> tuple[Column, ...]:
    return (Column("row", row), Column("flag", "Flag"), Column("column", column), *MONEY)


OPPORTUNITY = (
    Column("salesforce_id", "Salesforce id"),
    Column("name", "Opportunity"),
    Column("account_name", "Account"),
    Column("em_name", "Engagement manager"),
    Column("close_date", "Close date"),
    Column("close_quarter", "Close quarter"),
    Column("stage_name", "Stage"),
)
CLOSING_THIS_QUARTER = (
    *OPPORTUNITY,
    Column("level", "EM confidence"),
    Column("forecast_category", "Salesforce forecast category"),
    Column("ps_amount", "PS amount"),
    Column("currency", "Currency"),
    Column("em_confidence_rationale", "Rationale"),
)
SLIPPED = (
    *OPPORTUNITY,
    Column("moved_from", "Moved from"),
    Column("moved_to", "Moved to"),
    Column("moved_at", "Moved at"),
    Column("changed_by", "Changed by"),
    Column("ps_amount", "PS amount"),
    Column("currency", "Currency"),
)


def cents(amount: Decimal | None) -> str | None:
    """Money as the API writes it: exact, two decimals, whichever database summed it."""
    return None if amount is None else f"{amount:.2f}"


def with_currency(rows: Iterable[dict[str, Any]], currency: str) -> Iterator[dict[str, Any]]:
    """Deal rows with their PS amount in cents and the currency it is in."""
    for row in rows:
        yield {**row, "ps_amount": cents(row["ps_amount"]), "currency": currency}


CALIBRATION = (
    Column("confidence", "EM confidence at the start of the quarter"),
    Column("won_in_quarter", "Won in the quarter"),
    Column("won_later", "Won later"),
    Column("lost", "Lost"),
    Column("total", "Closed"),
    Column("held", "Held"),
    Column("held_rate", "Held rate"),
)
CALIBRATION_BY_EM = (Column("engagement_manager", "Engagement manager"), *CALIBRATION)
CALIBRATION_DEALS = (
    Column("quarter", "Due in quarter"),
    Column("salesforce_id", "Salesforce id"),
    Column("name", "Opportunity"),
    Column("em_name", "Engagement manager"),
    Column("confidence_then", "EM confidence at the start of the quarter"),
    Column("close_date_then", "Close date at the start of the quarter"),
    Column("close_date", "Closed on"),
    Column("outcome", "Outcome"),
)


def _outcomes(found: Outcomes) -> dict[str, Any]:
    rate = found.held_rate
    return {
        "confidence": found.confidence,
        **{outcome: getattr(found, outcome) for outcome in OUTCOMES},
        "total": found.total,
        "held": found.held,
        "held_rate": None if rate is None else round(rate, 4),
    }


def calibration_overall(report: Calibration) -> Iterator[dict[str, Any]]:
    for found in report.overall:
        yield _outcomes(found)


def calibration_by_em(report: Calibration) -> Iterator[dict[str, Any]]:
    for person in report.by_engagement_manager:
        for found in person.rows:
            yield {"engagement_manager": person.label, **_outcomes(found)}


GOING_STALE = (
    Column("iid", "Issue"),
    Column("title", "Title"),
    Column("em_name", "Engagement manager"),
    Column("last_activity_at", "Last activity"),
    Column("goes_stale_at", "Goes stale"),
)
CLOSED_AS_STALE = (
    Column("iid", "Issue"),
    Column("title", "Title"),
    Column("em_name", "Engagement manager"),
    Column("went_stale_on", "Went stale on"),
    Column("rule_close_qtr", "close_qtr"),
    Column("applied_at", "Closed by PS Plan at"),
    Column("state", "State now"),
    Column("stage", "Stage now"),
)
OVERRIDES = (
    Column("iid", "Issue"),
    Column("title", "Title"),
    Column("em_name", "Engagement manager"),
    Column("keep_open_until", "Kept open until"),
    Column("reason", "Reason"),
    Column("set_by", "Set by"),
    Column("keep_open_set_at", "Set at"),
    Column("last_activity_at", "Last activity"),
    Column("stale_without_it", "Stale without it"),
)
PREVIEW = (
    Column("iid", "Issue"),
    Column("title", "Title"),
    Column("rule", "Rule"),
    Column("why", "Why"),
    Column("close_qtr", "close_qtr"),
    Column("add_labels", "Labels added"),
    Column("remove_labels", "Labels removed"),
    Column("closes", "Closes the issue"),
    Column("held_back", "Waits for a later run (cap)"),
    Column("comment", "Comment PS Plan would post"),
)

QUALITY = {
    "opportunity": (
        *OPPORTUNITY,
        Column("level", "EM confidence"),
        Column("em_confidence_rationale", "Rationale"),
        Column("owner_name", "Opportunity owner"),
        Column("ps_amount", "PS amount"),
        Column("currency", "Currency"),
    ),
    "issue": (
        Column("iid", "Issue"),
        Column("title", "Title"),
        Column("stage", "Stage"),
        Column("state", "State"),
        Column("segment", "Segment"),
        Column("close_qtr", "close_qtr"),
        Column("em_name", "Engagement manager"),
        Column("labels", "Labels"),
        Column("last_activity_at", "Last activity"),
    ),
    "problem": (
        Column("kind", "Problem"),
        Column("iid", "Issue"),
        Column("title", "Title"),
        Column("salesforce_id", "Salesforce id"),
        Column("opportunity_name", "Opportunity"),
        Column("labels", "Labels"),
        Column("message", "Details"),
    ),
    "engagement_manager": (Column("name", "Engagement manager"), Column("email", "Email")),
}
