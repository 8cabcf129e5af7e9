"""Triage suggestions: the EM who works the account's Sales Territory, balanced against the team's load."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, QuerySet

from opportunities.choices import AssignmentRole, Segment
from opportunities.models import EngagementManager, TerritoryAssignment
from psplan.prepared import PreparedRows
from scoping.models import ScopingIssue
from scoping.selectors import People

# The primary EM is "well above" the team when they carry this many more open issues than the median.
WELL_ABOVE_MEDIAN = 3
_SEGMENT_LABELS = dict(Segment.choices)


@dataclass(frozen=True, slots=True)
class TriageIssue:
    """What triage reads of an issue and of its account and territory, from one values_list() row: model
    instances for 25 issues with their opportunities, accounts and territories were a third of the page."""

    pk: int
    iid: int
    title: str
    public_sector: bool
    created_at: datetime
    segment: str
    assignee_usernames: list[str]
    engagement_manager_id: int | None
    account_name: str | None  # None without an opportunity, or an opportunity without an account
    sales_territory: str | None
    territory_id: int | None  # None: the account's Sales Territory is not mapped to a territory
    territory_name: str | None
    territory_segment: str | None


# TriageIssue's fields as values_list() lookups, in its order.
TRIAGE_ISSUE_LOOKUPS = (
    "pk",
    "iid",
    "title",
    "public_sector",
    "created_at",
    "segment",
    "assignee_usernames",
    "engagement_manager_id",
    "opportunity__account__name",
    "opportunity__account__sales_territory",
    "opportunity__account__territory_id",
    "opportunity__account__territory__name",
    "opportunity__account__territory__segment",
)


def triage_issues(issues: QuerySet[ScopingIssue]) -> list[TriageIssue]:
    """The issues as triage reads them, in the queryset's order."""
    return [TriageIssue(*row) for row in issues.values_list(*TRIAGE_ISSUE_LOOKUPS)]


@dataclass(frozen=True)
class Suggestion:
    engagement_manager: EngagementManager | None
    segment: str
    reason: str
    candidates: tuple[tuple[EngagementManager, int], ...] = field(default=())
    """The EMs who cover the territory or segment, with their open load, least loaded first."""

    @property
    def load_text(self) -> str:
        """The five least-loaded candidates, e.g. "Priya Raman 2 · Tom Becker 9"."""
        return " · ".join(f"{em.name} {load}" for em, load in self.candidates[:5])


def open_issue_counts(engagement_managers: Iterable[EngagementManager]) -> dict[int, int]:
    """EM id → open scoping issues assigned to them, for the EMs given.

    Counted from the open issues (an index on state), not by joining every issue to every EM. Every EM's
    count is read and the others dropped here: an IN list of the whole team is a query psycopg cannot cache
    (over 50 parameters) and parses again on each request."""
    counts = dict.fromkeys((em.pk for em in engagement_managers), 0)
    counts.update((em_id, total) for em_id, total in _OPEN_PER_EM() if em_id in counts)
    return counts


def _open_per_em() -> QuerySet:
    return (
        ScopingIssue.objects.open()
        .filter(engagement_manager__isnull=False)
        .order_by()
        .values_list("engagement_manager")
        .annotate(total=Count("pk"))
    )


# Every assignment, filtered in _coverage: a team has a few hundred at most, and a query filtered by the
# page's territories cost more than reading them all.
def _assignments() -> QuerySet:
    return TerritoryAssignment.objects.order_by("territory__name", "role", "pk").values_list(
        "territory_id", "territory__segment", "role", "engagement_manager_id"
    )


# Prepared (see psplan.prepared): triage reads both on every request, and writing their SQL cost as much
# as running it.
_OPEN_PER_EM = PreparedRows(_open_per_em)
_ASSIGNMENTS = PreparedRows(_assignments)


@dataclass
class _Coverage:
    """Who works each territory (by role) and each segment, from one query."""

    by_territory: dict[int, dict[str, list[EngagementManager]]] = field(default_factory=dict)
    by_segment: dict[str, dict[int, EngagementManager]] = field(default_factory=dict)


def _coverage(issues: list[TriageIssue], assignable: dict[int, EngagementManager]) -> _Coverage:
    """Who works the issues' territories and segments. Only assignable EMs: no other can be suggested, nor
    is counted among the candidates. They are kept here, not by an IN list of the team (see
    open_issue_counts)."""
    territory_ids = {issue.territory_id for issue in issues if issue.territory_id is not None}
    segments = {issue.territory_segment for issue in issues if issue.territory_id is not None}
    found = _Coverage()
    for territory_id, segment, role, em_id in _ASSIGNMENTS():
        em = assignable.get(em_id)
        if em is None or (territory_id not in territory_ids and segment not in segments):
            continue
        found.by_territory.setdefault(territory_id, {}).setdefault(role, []).append(em)
        found.by_segment.setdefault(segment, {})[em.pk] = em
    return found


def suggest(issues: list[TriageIssue], people: People) -> dict[int, Suggestion]:
    """Issue id → suggested EM (one of `people.assignable`) and segment; each suggestion counts towards the
    load of the next ones, so `issues` come oldest first."""
    assignable = people.assignable
    coverage = _coverage(issues, {em.pk: em for em in assignable})
    load = open_issue_counts(assignable)
    median = statistics.median(load.values()) if load else 0
    suggestions = {}
    for issue in issues:
        suggestion = _suggest_one(
            issue, people.by_id.get(issue.engagement_manager_id), coverage, load, median
        )
        suggestions[issue.pk] = suggestion
        if suggestion.engagement_manager and issue.engagement_manager_id is None:
            load[suggestion.engagement_manager.pk] = load.get(suggestion.engagement_manager.pk, 0) + 1
    return suggestions


def _suggest_one(
    issue: TriageIssue,
    assigned_em: EngagementManager | None,
    coverage: _Coverage,
    load: dict[int, int],
    median: float,
) -> Suggestion:
    segment = issue.segment or issue.territory_segment or ""
    if assigned_em is not None:
        assigned = assigned_em.gitlab_username in issue.assignee_usernames
        reason = "Already assigned in GitLab" if assigned else "Engagement manager of the linked opportunity"
        return Suggestion(assigned_em, segment, reason)
    if issue.territory_id is None:
        reason = (
            "No opportunity linked"
            if issue.account_name is None
            else f"Territory {issue.sales_territory!r} is not mapped"
        )
        return Suggestion(None, segment, reason)
    territory, territory_segment = issue.territory_name, issue.territory_segment
    roles = coverage.by_territory.get(issue.territory_id, {})
    primary = next(iter(roles.get(AssignmentRole.PRIMARY, [])), None)
    covering = {em.pk: em for ems in roles.values() for em in ems}
    candidates = _by_load({**coverage.by_segment.get(territory_segment, {}), **covering}.values(), load)
    if primary and load.get(primary.pk, 0) >= median + WELL_ABOVE_MEDIAN and candidates:
        chosen = candidates[0][0]
        if chosen != primary:
            reason = (
                f"{primary} (primary for {territory}) carries {load.get(primary.pk, 0)} open issues, "
                f"well above the team's median of {median:g}; {chosen} has the fewest in "
                f"{_SEGMENT_LABELS.get(territory_segment, territory_segment)}"
            )
            return Suggestion(chosen, territory_segment, reason, candidates)
    chosen = primary or next(iter(roles.get(AssignmentRole.BACKUP, [])), None)
    if chosen is None:
        return Suggestion(None, territory_segment, f"No EM works {territory}", candidates)
    role = "Primary" if chosen == primary else "Backup"
    return Suggestion(chosen, territory_segment, f"{role} for {territory}", candidates)


def _by_load(
    ems: Iterable[EngagementManager], load: dict[int, int]
) -> tuple[tuple[EngagementManager, int], ...]:
    return tuple(sorted(((em, load[em.pk]) for em in ems), key=lambda pair: (pair[1], pair[0].name)))
