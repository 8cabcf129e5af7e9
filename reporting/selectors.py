"""Win rate and forecast: one aggregate query per figure; Python only arranges and totals the groups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, NullIf

from opportunities.choices import EMConfidence, Segment
from opportunities.models import Opportunity
from opportunities.selectors import ps_amount
from psplan.fiscal import FiscalQuarter, quarter_sort_key
from scoping.choices import Stage
from scoping.models import ScopingIssue

WIN_RATE_GROUPS = {
    "quarter": "close_qtr",
    "engagement_manager": "engagement_manager__gitlab_username",
    "segment": "segment",
}
# The current quarter and the 8 before it: two fiscal years back, plus the quarter under way.
WIN_RATE_QUARTERS = 9
WON, LOST = Stage.CLOSED_WON.value, Stage.CLOSED_LOST.value
NO_ENGAGEMENT_MANAGER = "No engagement manager"
NO_SEGMENT = "No segment"


def rate(won: int, lost: int) -> float | None:
    """CONTRACT.md: won / (won + lost), and null rather than 0 when nothing was decided."""
    return won / (won + lost) if won + lost else None


def _outcome_counts() -> dict[str, Count]:
    return {"won": Count("id", filter=Q(stage=WON)), "lost": Count("id", filter=Q(stage=LOST))}


def win_rate(*, issues: QuerySet[ScopingIssue], group_by: str, quarter: str = "") -> dict[str, Any]:
    """Won and lost scoping issues per quarter (`close_qtr`), engagement manager or segment."""
    rows = (
        issues.filter(stage__in=Stage.outcomes())
        .values(key=Coalesce(F(WIN_RATE_GROUPS[group_by]), Value("")))
        .annotate(**_outcome_counts())
        .order_by()
    )
    counts = {row["key"]: (row["won"], row["lost"]) for row in rows}
    if group_by == "quarter":
        keys = _quarters(counts, also=quarter)
    else:
        keys = sorted(counts, key=lambda key: (key == "", key.lower()))
    groups = [_group(key, *counts.get(key, (0, 0))) for key in keys]
    won, lost = sum(g["won"] for g in groups), sum(g["lost"] for g in groups)
    return {"won": won, "lost": lost, "win_rate": rate(won, lost), "groups": groups}


def _group(key: str, won: int, lost: int) -> dict[str, Any]:
    return {"key": key, "won": won, "lost": lost, "win_rate": rate(won, lost)}


def _quarters(counts: dict[str, Any], *, also: str) -> list[str]:
    """Every quarter from the first to the last seen, so a quarter with no decisions shows as null."""
    seen = sorted(FiscalQuarter.parse(key) for key in counts if quarter_sort_key(key)[0] != 9999)
    if also:
        seen = sorted({*seen, FiscalQuarter.parse(also)})
    series = []
    quarter = seen[0] if seen else None
    while quarter is not None and quarter <= seen[-1]:
        series.append(quarter.code)
        quarter = quarter.next()
    # Outcomes without a readable close_qtr are a data-quality problem, shown last rather than dropped.
    return series + sorted((key for key in counts if quarter_sort_key(key)[0] == 9999), key=str)


# --- Win rate over the review window: overall, quarter by EM, quarter by segment --------------------


@dataclass(frozen=True)
class Tally:
    """Won and lost issues of one figure, and the issue-list filters that select exactly them."""

    won: int = 0
    lost: int = 0
    # None when the issue list has no filter for this group (an EM not linked to GitLab).
    filters: tuple[tuple[str, str], ...] | None = ()

    @property
    def decided(self) -> int:
        return self.won + self.lost

    @property
    def win_rate(self) -> float | None:
        return rate(self.won, self.lost)


@dataclass(frozen=True)
class TallyRow:
    """One row of a matrix: a person or segment, a tally per quarter and over the whole window."""

    key: str
    label: str
    cells: list[Tally]
    total: Tally
    flag: str = ""  # why the row needs someone's attention


@dataclass(frozen=True)
class WinRateWindow:
    quarters: list[str]
    overall: list[Tally]
    total: Tally
    by_engagement_manager: list[TallyRow] = field(default_factory=list)
    by_segment: list[TallyRow] = field(default_factory=list)


def win_rate_window(*, issues: QuerySet[ScopingIssue], through: FiscalQuarter) -> WinRateWindow:
    """The quarter `through` and the 8 before it: overall and as quarter by EM and quarter by segment."""
    codes = [quarter.code for quarter in through.ending_series(WIN_RATE_QUARTERS)]
    decided = issues.filter(stage__in=Stage.outcomes(), close_qtr__in=codes).order_by()
    window = (("close_qtr_in", ",".join(codes)),)
    overall = {row["close_qtr"]: row for row in decided.values("close_qtr").annotate(**_outcome_counts())}
    return WinRateWindow(
        quarters=codes,
        overall=[_tally(overall.get(code), ("close_qtr", code)) for code in codes],
        total=Tally(
            won=sum(row["won"] for row in overall.values()),
            lost=sum(row["lost"] for row in overall.values()),
            filters=window,
        ),
        by_engagement_manager=_em_rows(decided, codes),
        by_segment=_segment_rows(decided, codes),
    )


def _tally(row: dict[str, Any] | None, *filters: tuple[str, str]) -> Tally:
    return Tally(won=row["won"] if row else 0, lost=row["lost"] if row else 0, filters=tuple(filters))


def _em_rows(decided: QuerySet[ScopingIssue], codes: list[str]) -> list[TallyRow]:
    groups = decided.values(
        "close_qtr",
        em=F("engagement_manager_id"),
        name=F("engagement_manager__name"),
        username=F("engagement_manager__gitlab_username"),
    ).annotate(**_outcome_counts())
    by_person: dict[tuple[Any, str, str], dict[str, dict[str, Any]]] = {}
    for row in groups:
        person = (row["em"], row["username"] or "", row["name"] or "")
        by_person.setdefault(person, {})[row["close_qtr"]] = row
    people = sorted(by_person, key=lambda person: (person[0] is None, person[2].lower()))
    return [_em_row(person, by_person[person], codes) for person in people]


def _em_row(
    person: tuple[Any, str, str], by_quarter: dict[str, dict[str, Any]], codes: list[str]
) -> TallyRow:
    em, username, name = person
    if em is None:
        scope = ("has_engagement_manager", "false")
        return _tally_row("", NO_ENGAGEMENT_MANAGER, by_quarter, codes, scope, "unassigned")
    if not username:
        # An EM not linked to a GitLab user has no username to filter the issue list by.
        return _tally_row("", name, by_quarter, codes, None, "unlinked")
    return _tally_row(username, name, by_quarter, codes, ("engagement_manager", username), "")


def _segment_rows(decided: QuerySet[ScopingIssue], codes: list[str]) -> list[TallyRow]:
    by_segment: dict[str, dict[str, dict[str, Any]]] = {}
    for row in decided.values("close_qtr", "segment").annotate(**_outcome_counts()):
        by_segment.setdefault(row["segment"], {})[row["close_qtr"]] = row
    labels = dict(Segment.choices)
    rows = []
    for segment in [*Segment.values, *(sorted(set(by_segment) - {*Segment.values, ""})), ""]:
        if segment == "" and "" not in by_segment:
            continue
        mine = by_segment.get(segment, {})
        if segment:
            rows.append(
                _tally_row(segment, labels.get(segment, segment), mine, codes, ("segment", segment), "")
            )
        else:
            rows.append(_tally_row("", NO_SEGMENT, mine, codes, ("has_segment", "false"), "no segment"))
    return rows


def _tally_row(
    key: str,
    label: str,
    by_quarter: dict[str, dict[str, Any]],
    codes: list[str],
    scope: tuple[str, str] | None,
    flag: str,
) -> TallyRow:
    scoped = (scope,) if scope else ()
    cells = [_tally(by_quarter.get(code), *scoped, ("close_qtr", code)) for code in codes]
    # No scope means the issue list cannot select these issues: the figures are shown without links.
    window = (*scoped, ("close_qtr_in", ",".join(codes)))
    total = Tally(
        won=sum(cell.won for cell in cells),
        lost=sum(cell.lost for cell in cells),
        filters=window if scoped else None,
    )
    return TallyRow(
        key=key,
        label=label,
        cells=[cell if scoped else Tally(cell.won, cell.lost, filters=None) for cell in cells],
        total=total,
        flag=flag,
    )


# --- Forecast ---------------------------------------------------------------------------------

_CONFIDENCE_ORDER = {value: index for index, value in enumerate(EMConfidence.values)}
# The forecast page reads from the most to the least confident.
CONFIDENCE_COLUMNS = [EMConfidence.GREEN, EMConfidence.AMBER, EMConfidence.RED, EMConfidence.GREY]
# Salesforce's standard ForecastCategoryName values, most committed first; others follow by name.
FORECAST_CATEGORIES = ["Commit", "Best Case", "Pipeline", "Omitted", "Closed"]
_AMOUNT = DecimalField(max_digits=20, decimal_places=2)
ZERO = Decimal("0")


def confidence() -> Coalesce:
    """Salesforce leaves the picklist empty for "no visibility", which the team calls Grey."""
    return Coalesce(NullIf(F("em_confidence"), Value("")), Value(EMConfidence.GREY.value))


def _money() -> dict[str, Any]:
    return {"count": Count("id"), "amount": Coalesce(Sum(ps_amount()), Value(ZERO), output_field=_AMOUNT)}


def forecast(*, opportunities: QuerySet[Opportunity]) -> dict[str, Any]:
    """Open pipeline by close quarter and EM confidence: how many opportunities and their PS amount."""
    rows = (
        opportunities.filter(is_closed=False)
        .values(quarter=F("close_quarter"), confidence=confidence())
        .annotate(**_money())
        .order_by()
    )
    groups = sorted(
        (
            {
                "close_quarter": row["quarter"],
                "em_confidence": row["confidence"],
                "count": row["count"],
                "amount": row["amount"],
            }
            for row in rows
        ),
        key=lambda g: (quarter_sort_key(g["close_quarter"]), _CONFIDENCE_ORDER.get(g["em_confidence"], 9)),
    )
    return {
        "count": sum(g["count"] for g in groups),
        "amount": sum((g["amount"] for g in groups), ZERO),
        "by_em_confidence": _totals(groups, "em_confidence", key=lambda v: _CONFIDENCE_ORDER.get(v, 9)),
        "by_close_quarter": _totals(groups, "close_quarter", key=quarter_sort_key),
        "groups": groups,
    }


def _totals(groups: list[dict[str, Any]], field: str, *, key) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for group in groups:
        total = totals.setdefault(group[field], {field: group[field], "count": 0, "amount": ZERO})
        total["count"] += group["count"]
        total["amount"] += group["amount"]
    return sorted(totals.values(), key=lambda total: key(total[field]))


@dataclass(frozen=True)
class Money:
    """How many opportunities and their PS amount."""

    count: int = 0
    amount: Decimal = ZERO

    def __add__(self, other: Money) -> Money:
        return Money(self.count + other.count, self.amount + other.amount)


def _sum(values: Iterable[Money]) -> Money:
    return sum(values, Money())


@dataclass(frozen=True)
class RowSpec:
    """A grid row before its figures: the group key, its label, a flag, and the list filters for it."""

    key: Any
    label: str
    flag: str = ""
    # None when the list page has no filter for this row (no close date, no EM, an unlinked EM).
    filters: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class MoneyRow:
    """A row of a forecast grid: one cell per column and the row's total."""

    spec: RowSpec
    cells: list[Money]
    total: Money
    columns: list[str] = field(default_factory=list)

    @property
    def by_column(self) -> list[tuple[str, Money]]:
        return list(zip(self.columns, self.cells, strict=True))

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def flag(self) -> str:
        return self.spec.flag

    @property
    def filters(self) -> tuple[tuple[str, str], ...] | None:
        return self.spec.filters


@dataclass(frozen=True)
class Grid:
    """Figures arranged by two dimensions: rows, columns, and the totals of each."""

    columns: list[str]
    rows: list[MoneyRow]
    totals: list[Money]
    total: Money
    # The totals row counts everything the page's filters select: no filter of its own.
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def totals_by_column(self) -> list[tuple[str, Money]]:
        return list(zip(self.columns, self.totals, strict=True))


def _grid(
    groups: Iterable[dict[str, Any]],
    *,
    row_key: str,
    column_key: str,
    rows: list[RowSpec],
    columns: list[str],
) -> Grid:
    """Arrange (row, column) groups into a grid, rows and columns in the order given."""
    cells = {(g[row_key], g[column_key]): Money(g["count"], g["amount"]) for g in groups}
    grid_rows = []
    for spec in rows:
        row_cells = [cells.get((spec.key, column), Money()) for column in columns]
        grid_rows.append(MoneyRow(spec=spec, cells=row_cells, total=_sum(row_cells), columns=columns))
    totals = [_sum(row.cells[index] for row in grid_rows) for index in range(len(columns))]
    return Grid(columns=columns, rows=grid_rows, totals=totals, total=_sum(totals))


def _ordered_categories(seen: Iterable[str]) -> list[str]:
    known = [category for category in FORECAST_CATEGORIES if category in seen]
    return known + sorted(set(seen) - set(FORECAST_CATEGORIES))


@dataclass(frozen=True)
class ForecastReport:
    current_quarter: str
    by_quarter: Grid  # close quarter by EM confidence
    by_em: Grid  # engagement manager by EM confidence
    by_em_category: Grid  # engagement manager by Salesforce forecast category
    confidence_vs_category: Grid  # EM confidence by Salesforce forecast category
    this_quarter: MoneyRow  # what closes this quarter, by EM confidence

    @property
    def em_side_by_side(self) -> list[tuple[MoneyRow, MoneyRow]]:
        """Each EM's row by confidence beside the same EM's row by Salesforce forecast category."""
        return list(zip(self.by_em.rows, self.by_em_category.rows, strict=True))


def forecast_report(*, opportunities: QuerySet[Opportunity], current: FiscalQuarter) -> ForecastReport:
    """The open pipeline four ways: by close quarter, by EM, beside Salesforce's forecast category."""
    pipeline = opportunities.filter(is_closed=False).order_by()
    by_quarter = list(pipeline.values("close_quarter", level=confidence()).annotate(**_money()))
    by_em = list(_em_values(pipeline, level=confidence()).annotate(**_money()))
    by_em_category = list(_em_values(pipeline, "forecast_category").annotate(**_money()))
    crossed = list(pipeline.values("forecast_category", level=confidence()).annotate(**_money()))
    quarter_grid = _grid(
        by_quarter,
        row_key="close_quarter",
        column_key="level",
        rows=_quarter_rows({g["close_quarter"] for g in by_quarter}, current),
        columns=CONFIDENCE_COLUMNS,
    )
    this_quarter = next((row for row in quarter_grid.rows if row.spec.key == current.code), None)
    empty = [Money()] * len(CONFIDENCE_COLUMNS)
    # Both EM grids group the same opportunities, so one list of EM rows serves both, in one order.
    people = _em_specs(by_em)
    return ForecastReport(
        current_quarter=current.code,
        by_quarter=quarter_grid,
        by_em=_grid(
            by_em,
            row_key="em_id",
            column_key="level",
            rows=people,
            columns=CONFIDENCE_COLUMNS,
        ),
        by_em_category=_grid(
            by_em_category,
            row_key="em_id",
            column_key="forecast_category",
            rows=people,
            columns=_ordered_categories({g["forecast_category"] for g in by_em_category}),
        ),
        confidence_vs_category=_grid(
            crossed,
            row_key="level",
            column_key="forecast_category",
            rows=[RowSpec(value, value, filters=(("em_confidence", value),)) for value in CONFIDENCE_COLUMNS],
            columns=_ordered_categories({g["forecast_category"] for g in crossed}),
        ),
        this_quarter=this_quarter
        or MoneyRow(
            spec=RowSpec(current.code, current.code, "this quarter"),
            cells=empty,
            total=Money(),
            columns=CONFIDENCE_COLUMNS,
        ),
    )


def _em_values(pipeline: QuerySet[Opportunity], *fields: str, **expressions: Any) -> QuerySet:
    return pipeline.values(
        *fields,
        em_id=F("engagement_manager_id"),
        em_username=F("engagement_manager__gitlab_username"),
        em_name=F("engagement_manager__name"),
        **expressions,
    )


def _em_specs(groups: list[dict[str, Any]]) -> list[RowSpec]:
    """One row per EM by name; the opportunities without an EM last, flagged."""
    people = {(g["em_id"], g["em_username"], g["em_name"]) for g in groups if g["em_id"] is not None}
    rows = [
        RowSpec(
            em_id,
            name,
            # An EM not linked to a GitLab user has no username to filter the opportunities page by.
            flag="" if username else "unlinked",
            filters=(("engagement_manager", username),) if username else None,
        )
        for em_id, username, name in sorted(people, key=lambda p: p[2].lower())
    ]
    if any(g["em_id"] is None for g in groups):
        rows.append(RowSpec(None, NO_ENGAGEMENT_MANAGER, flag="unassigned"))
    return rows


def _quarter_rows(seen: set[str], current: FiscalQuarter) -> list[RowSpec]:
    """Close quarters in order; those before the current one are overdue, an empty one has no date."""
    rows = []
    for code in sorted(seen, key=quarter_sort_key):
        if not code:
            rows.append(RowSpec(code, "No close date", "no close date"))
            continue
        flag = "overdue" if FiscalQuarter.parse(code) < current else ""
        flag = "this quarter" if code == current.code else flag
        rows.append(RowSpec(code, code, flag, filters=(("close_quarter", code),)))
    return rows


def closing_in(*, opportunities: QuerySet[Opportunity], quarter: FiscalQuarter) -> QuerySet:
    """The open opportunities due to close in `quarter`, most confident first, then largest first."""
    order = Case(
        *(When(level=value, then=Value(index)) for index, value in enumerate(CONFIDENCE_COLUMNS)),
        default=Value(len(CONFIDENCE_COLUMNS)),
    )
    return (
        opportunities.filter(is_closed=False, close_quarter=quarter.code)
        .values(
            "salesforce_id",
            "name",
            "close_date",
            "close_quarter",
            "stage_name",
            "forecast_category",
            "em_confidence_rationale",
            account_name=F("account__name"),
            em_name=F("engagement_manager__name"),
            level=confidence(),
            ps_amount=ps_amount(),
        )
        .order_by(order, F("ps_amount").desc(nulls_last=True), "close_date", "salesforce_id")
    )
