"""Reports: one aggregate query each; Python only orders and totals the groups the database returns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, NullIf

from opportunities.choices import EMConfidence
from opportunities.models import Opportunity
from opportunities.selectors import ps_amount
from psplan.fiscal import FiscalQuarter, quarter_sort_key
from scoping.choices import ProblemKind, Stage
from scoping.models import DataQualityProblem, ScopingIssue

WIN_RATE_GROUPS = {
    "quarter": "close_qtr",
    "engagement_manager": "engagement_manager__gitlab_username",
    "segment": "segment",
}


def rate(won: int, lost: int) -> float | None:
    """CONTRACT.md: won / (won + lost), and null rather than 0 when nothing was decided."""
    return won / (won + lost) if won + lost else None


def win_rate(*, issues: QuerySet[ScopingIssue], group_by: str, quarter: str = "") -> dict[str, Any]:
    """Won and lost scoping issues per quarter (`close_qtr`), engagement manager or segment."""
    rows = (
        issues.filter(stage__in=Stage.outcomes())
        .values(key=Coalesce(F(WIN_RATE_GROUPS[group_by]), Value("")))
        .annotate(
            won=Count("id", filter=Q(stage=Stage.CLOSED_WON)),
            lost=Count("id", filter=Q(stage=Stage.CLOSED_LOST)),
        )
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


_CONFIDENCE_ORDER = {value: index for index, value in enumerate(EMConfidence.values)}
_AMOUNT = DecimalField(max_digits=20, decimal_places=2)


def forecast(*, opportunities: QuerySet[Opportunity]) -> dict[str, Any]:
    """Open pipeline by close quarter and EM confidence: how many opportunities and their PS amount."""
    rows = (
        opportunities.filter(is_closed=False)
        .values(
            quarter=F("close_quarter"),
            # Salesforce leaves the picklist empty for "no visibility", which the team calls Grey.
            confidence=Coalesce(NullIf(F("em_confidence"), Value("")), Value(EMConfidence.GREY.value)),
        )
        .annotate(
            count=Count("id"), amount=Coalesce(Sum(ps_amount()), Value(Decimal("0")), output_field=_AMOUNT)
        )
        .order_by()
    )
    groups = sorted(
        (
            {"close_quarter": row["quarter"], "em_confidence": row["confidence"], **_money(row)}
            for row in rows
        ),
        key=lambda g: (quarter_sort_key(g["close_quarter"]), _CONFIDENCE_ORDER.get(g["em_confidence"], 9)),
    )
    return {
        "count": sum(g["count"] for g in groups),
        "amount": sum((g["amount"] for g in groups), Decimal("0")),
        "by_em_confidence": _totals(groups, "em_confidence", key=lambda v: _CONFIDENCE_ORDER.get(v, 9)),
        "by_close_quarter": _totals(groups, "close_quarter", key=quarter_sort_key),
        "groups": groups,
    }


def _money(row: dict[str, Any]) -> dict[str, Any]:
    return {"count": row["count"], "amount": row["amount"]}


def _totals(groups: list[dict[str, Any]], field: str, *, key) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for group in groups:
        total = totals.setdefault(group[field], {field: group[field], "count": 0, "amount": Decimal("0")})
        total["count"] += group["count"]
        total["amount"] += group["amount"]
    return sorted(totals.values(), key=lambda total: key(total[field]))


def problem_counts() -> list[dict[str, Any]]:
    """Open data-quality problems per kind, most common first, with the kind's label."""
    labels = dict(ProblemKind.choices)
    rows = DataQualityProblem.objects.values("kind").annotate(count=Count("id")).order_by("-count", "kind")
    return [
        {"kind": row["kind"], "label": labels.get(row["kind"], row["kind"]), "count": row["count"]}
        for row in rows
    ]
