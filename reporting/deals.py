"""What the opportunity history tells: deals that slipped out of a quarter, and how well EM confidence held.

Both read `OpportunityChange`, the history the Salesforce mirror and PS Plan's edits record for
CloseDate and EM Confidence, with values written as text (`2027-01-15`, `Green`). ISO dates compare as
text in date order, so the history is read by the database without parsing it in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Cast, Coalesce, NullIf

from opportunities.choices import EMConfidence
from opportunities.models import Opportunity, OpportunityChange
from opportunities.selectors import ps_amount
from psplan.audit import changed_by
from psplan.fiscal import FiscalQuarter
from reporting.selectors import CONFIDENCE_COLUMNS, NO_ENGAGEMENT_MANAGER

CLOSE_DATE, EM_CONFIDENCE = "CloseDate", "EMConfidence"
_AMOUNT = DecimalField(max_digits=20, decimal_places=2)
_TEXT = CharField()


# --- Slipped deals ------------------------------------------------------------------------------


def _moves_out(
    *, starts_at: datetime, ends_at: datetime, first: str, last: str
) -> QuerySet[OpportunityChange]:
    """CloseDate changes made during the quarter that took a date inside it (`first` to `last`, ISO) to one
    after it."""
    return OpportunityChange.objects.filter(
        field=CLOSE_DATE,
        changed_at__gte=starts_at,
        changed_at__lt=ends_at,
        old_value__range=(first, last),
        new_value__gt=last,
    )


# A slipped deal's columns: its key → what the latest move out (an OpportunityChange) reads for it. Plain
# lookups renamed in Python cost less to build than F() aliases.
DEAL_COLUMNS = {
    "salesforce_id": "opportunity__salesforce_id",
    "name": "opportunity__name",
    "close_date": "opportunity__close_date",
    "close_quarter": "opportunity__close_quarter",
    "stage_name": "opportunity__stage_name",
    "is_closed": "opportunity__is_closed",
    "is_won": "opportunity__is_won",
    "account_name": "opportunity__account__name",
    "em_name": "opportunity__engagement_manager__name",
    "moved_from": "old_value",
    "moved_to": "new_value",
    "moved_at": "changed_at",
    "source": "source",
    "actor_name": "actor_name",
    "actor_first_name": "actor__first_name",
    "actor_last_name": "actor__last_name",
    "actor_username": "actor__username",
}


def who(row: dict[str, Any]) -> str:
    """Who made a change, as `ChangeRecord.who` says it: the PS Plan user, else the person the other
    system names, else the system it came from (the Salesforce mirror does not read the author)."""
    return changed_by(
        first_name=row["actor_first_name"],
        last_name=row["actor_last_name"],
        username=row["actor_username"],
        actor_name=row["actor_name"],
        source=row["source"],
    )


@dataclass(frozen=True)
class Slipped:
    """The deals that slipped out of a quarter: how many, their PS amount, and (up to a limit) the deals."""

    count: int
    amount: Decimal
    deals: list[dict[str, Any]]


def slipped(
    *, opportunities: QuerySet[Opportunity], quarter: FiscalQuarter, limit: int | None = None
) -> Slipped:
    """Each opportunity that slipped out of `quarter` once, with its latest move out, newest first; and the
    count and PS amount of all of them. One query: the totals are window sums, taken before the limit."""
    bounds = {"starts_at": quarter.starts_at(), "ends_at": quarter.ends_at()}
    bounds |= {"first": quarter.first_day().isoformat(), "last": quarter.last_day().isoformat()}
    # A copy: the built query is shared, and evaluating it itself would keep its rows for the next caller.
    rows = _latest_moves_out(**bounds).all()
    if opportunities.query.has_filters():  # the page's filters chose some opportunities
        rows = rows.filter(opportunity__in=opportunities.order_by().values("pk"))
    found = list(rows[:limit] if limit else rows)
    if not found:
        return Slipped(count=0, amount=Decimal("0"), deals=[])
    totals = found[0]
    amount = totals["slipped_amount"] or Decimal("0")  # no amount on any of them
    return Slipped(totals["slipped_count"], amount, [_deal(row) for row in found])


@lru_cache(maxsize=16)
def _latest_moves_out(**bounds: Any) -> QuerySet[OpportunityChange]:
    """Each opportunity's latest move out of a quarter, with the deal's columns and the window totals; built
    once per quarter, as building it cost half as much again as running it."""
    moves = _moves_out(**bounds)
    later = moves.filter(opportunity=OuterRef("opportunity")).filter(
        Q(changed_at__gt=OuterRef("changed_at")) | Q(changed_at=OuterRef("changed_at"), pk__gt=OuterRef("pk"))
    )
    return (
        moves.filter(~Exists(later))
        .values(*DEAL_COLUMNS.values())
        .annotate(
            ps_amount=ps_amount(through="opportunity__"),
            slipped_count=Window(Count("pk")),
            slipped_amount=Window(Sum("ps_amount")),
        )
        .order_by("-changed_at", "opportunity__salesforce_id")
    )


def _deal(row: dict[str, Any]) -> dict[str, Any]:
    deal = {key: row[lookup] for key, lookup in DEAL_COLUMNS.items()}
    return deal | {"ps_amount": row["ps_amount"], "changed_by": who(deal)}


# --- EM confidence calibration --------------------------------------------------------------------

OUTCOMES = ("won_in_quarter", "won_later", "lost")
OUTCOME_LABELS = {"won_in_quarter": "Won in the quarter", "won_later": "Won later", "lost": "Lost"}
# What each confidence claims (opportunity-tracking handbook): Green, won in the stated timeframe;
# Amber, won but maybe later; Red, not won in the timeframe. Grey claims nothing.
HELD_WHEN = {
    EMConfidence.GREEN: ("won_in_quarter",),
    EMConfidence.AMBER: ("won_in_quarter", "won_later"),
    EMConfidence.RED: ("won_later", "lost"),
    EMConfidence.GREY: (),
}
CALIBRATION_QUARTERS = 4


def _value_at_start(field: str, start) -> Subquery:
    """The value `field` had at `start`: the old value of the first change recorded since then."""
    first_change = OpportunityChange.objects.filter(
        opportunity=OuterRef("pk"), field=field, changed_at__gte=start
    ).order_by("changed_at", "pk")
    return Subquery(first_change.values("old_value")[:1])


def _due_in(quarter: FiscalQuarter) -> Q:
    """Due in `quarter` when it began: no CloseDate change since and a close date in it, or the first
    change since then moved a close date that was in it. (Semi-joins, so the database never looks up
    the history of every closed deal one by one.)"""
    first, last = quarter.first_day(), quarter.last_day()
    since_start = OpportunityChange.objects.filter(field=CLOSE_DATE, changed_at__gte=quarter.starts_at())
    earlier = since_start.filter(opportunity=OuterRef("opportunity")).filter(
        Q(changed_at__lt=OuterRef("changed_at")) | Q(changed_at=OuterRef("changed_at"), pk__lt=OuterRef("pk"))
    )
    first_move_from_quarter = since_start.filter(
        opportunity=OuterRef("pk"), old_value__gte=first.isoformat(), old_value__lte=last.isoformat()
    ).filter(~Exists(earlier))
    unmoved = Q(close_date__lte=last) & ~Exists(since_start.filter(opportunity=OuterRef("pk")))
    return unmoved | Exists(first_move_from_quarter)


def calibration_cohort(*, opportunities: QuerySet[Opportunity], quarter: FiscalQuarter) -> QuerySet:
    """Closed opportunities that were due in `quarter` when it began, with the EM confidence they had then.

    Without a change recorded since the quarter began, an opportunity had then the values it has now.
    """
    start = quarter.starts_at()
    return (
        opportunities.filter(is_closed=True, close_date__gte=quarter.first_day())
        .filter(_due_in(quarter))
        .annotate(
            confidence_then=Coalesce(
                NullIf(
                    Coalesce(_value_at_start(EM_CONFIDENCE, start), F("em_confidence"), output_field=_TEXT),
                    Value(""),
                ),
                Value(EMConfidence.GREY.value),
                output_field=_TEXT,
            ),
        )
        .order_by()
    )


def _outcome_counts(quarter: FiscalQuarter) -> dict[str, Count]:
    last = quarter.last_day()
    return {
        "won_in_quarter": Count("id", filter=Q(is_won=True, close_date__lte=last)),
        "won_later": Count("id", filter=Q(is_won=True, close_date__gt=last)),
        "lost": Count("id", filter=Q(is_won=False)),
    }


def _union(querysets: list[QuerySet]) -> QuerySet:
    return querysets[0].union(*querysets[1:], all=True) if len(querysets) > 1 else querysets[0]


@dataclass(frozen=True)
class Outcomes:
    """How the closed opportunities of one confidence turned out."""

    confidence: str
    won_in_quarter: int = 0
    won_later: int = 0
    lost: int = 0

    @property
    def counts(self) -> tuple[int, int, int]:
        return (self.won_in_quarter, self.won_later, self.lost)

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def held(self) -> int | None:
        """How many turned out as the confidence said; None for Grey, which says nothing."""
        parts = HELD_WHEN.get(self.confidence, ())
        return sum(getattr(self, part) for part in parts) if parts else None

    @property
    def held_rate(self) -> float | None:
        return self.held / self.total if self.held is not None and self.total else None

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(self.confidence, *(a + b for a, b in zip(self.counts, other.counts, strict=True)))


@dataclass(frozen=True)
class PersonCalibration:
    label: str
    rows: list[Outcomes]
    flag: str = ""


@dataclass(frozen=True)
class Calibration:
    quarters: list[str]
    overall: list[Outcomes]
    by_engagement_manager: list[PersonCalibration]


def calibration(*, opportunities: QuerySet[Opportunity], quarters: list[FiscalQuarter]) -> Calibration:
    """Per EM and overall: of the deals due in each quarter, how each confidence turned out (one query)."""
    groups = _union(
        [
            calibration_cohort(opportunities=opportunities, quarter=quarter)
            .values(
                "confidence_then",
                em_id=F("engagement_manager_id"),
                em_name=F("engagement_manager__name"),
                quarter=Value(quarter.code),
            )
            .annotate(**_outcome_counts(quarter))
            for quarter in quarters
        ]
    )
    people: dict[Any, dict[str, Outcomes]] = {}
    names: dict[Any, str] = {}
    for group in groups:
        mine = people.setdefault(group["em_id"], {})
        names[group["em_id"]] = group["em_name"] or NO_ENGAGEMENT_MANAGER
        found = Outcomes(group["confidence_then"], *(group[outcome] for outcome in OUTCOMES))
        mine[found.confidence] = mine.get(found.confidence, Outcomes(found.confidence)) + found
    overall = {value: Outcomes(value) for value in CONFIDENCE_COLUMNS}
    for mine in people.values():
        for value, found in mine.items():
            overall[value] = overall.get(value, Outcomes(value)) + found
    order = sorted(people, key=lambda em: (em is None, names[em].lower()))
    return Calibration(
        quarters=[quarter.code for quarter in quarters],
        overall=list(overall.values()),
        by_engagement_manager=[
            PersonCalibration(
                label=names[em],
                rows=[people[em].get(value, Outcomes(value)) for value in CONFIDENCE_COLUMNS],
                flag="unassigned" if em is None else "",
            )
            for em in order
        ],
    )


def calibration_deals(*, opportunities: QuerySet[Opportunity], quarters: list[FiscalQuarter]) -> QuerySet:
    """The deals behind the calibration figures, one row per deal and quarter it was due in."""
    return _union(
        [
            calibration_cohort(opportunities=opportunities, quarter=quarter)
            .annotate(
                close_date_then=Coalesce(
                    _value_at_start(CLOSE_DATE, quarter.starts_at()),
                    Cast("close_date", _TEXT),
                    output_field=_TEXT,
                )
            )
            .values(
                "salesforce_id",
                "name",
                "close_date_then",
                "close_date",
                "is_won",
                "confidence_then",
                quarter=Value(quarter.code),
                # Quarter codes do not sort by date as text (Q425 comes before Q126).
                quarter_order=Value(quarter.year * 4 + quarter.quarter),
                em_name=F("engagement_manager__name"),
                outcome=_outcome_label(quarter),
            )
            for quarter in quarters
        ]
    ).order_by("quarter_order", "em_name", "salesforce_id")


def _outcome_label(quarter: FiscalQuarter) -> Case:
    last = quarter.last_day()
    return Case(
        When(is_won=True, close_date__lte=last, then=Value(OUTCOME_LABELS["won_in_quarter"])),
        When(is_won=True, then=Value(OUTCOME_LABELS["won_later"])),
        default=Value(OUTCOME_LABELS["lost"]),
    )
