"""Triage suggestions: the EM who works the account's Sales Territory, balanced against the team's load."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count

from opportunities.choices import AssignmentRole
from opportunities.models import EngagementManager, Territory, TerritoryAssignment
from scoping.models import ScopingIssue

# The primary EM is "well above" the team when they carry this many more open issues than the median.
WELL_ABOVE_MEDIAN = 3


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
    counts.update((em_id, total) for em_id, total in _OPEN_PER_EM.all() if em_id in counts)
    return counts


# Built once (each read is a fresh copy): it never changes, and building it cost as much as running it.
_OPEN_PER_EM = (
    ScopingIssue.objects.open()
    .filter(engagement_manager__isnull=False)
    .order_by()
    .values_list("engagement_manager")
    .annotate(total=Count("pk"))
)


@dataclass
class _Coverage:
    """Who works each territory (by role) and each segment, from one query."""

    by_territory: dict[int, dict[str, list[EngagementManager]]] = field(default_factory=dict)
    by_segment: dict[str, dict[int, EngagementManager]] = field(default_factory=dict)


def _coverage(territories: Iterable[Territory], assignable: dict[int, EngagementManager]) -> _Coverage:
    """Only assignable EMs: no other can be suggested, nor is counted among the candidates. They are kept
    here, not by an IN list of the team (see open_issue_counts)."""
    territories = list(territories)
    territory_ids, segments = {t.pk for t in territories}, {t.segment for t in territories}
    found = _Coverage()
    for territory_id, segment, role, em_id in _ASSIGNMENTS.all():
        em = assignable.get(em_id)
        if em is None or (territory_id not in territory_ids and segment not in segments):
            continue
        found.by_territory.setdefault(territory_id, {}).setdefault(role, []).append(em)
        found.by_segment.setdefault(segment, {})[em.pk] = em
    return found


# Every assignment, built once and filtered here: a team has a few hundred at most, and building a query
# filtered by the page's territories cost more than reading them all.
_ASSIGNMENTS = TerritoryAssignment.objects.order_by("territory__name", "role", "pk").values_list(
    "territory_id", "territory__segment", "role", "engagement_manager_id"
)


def _territory(issue: ScopingIssue) -> Territory | None:
    account = issue.opportunity.account if issue.opportunity else None
    return account.territory if account else None


def suggest(issues: Iterable[ScopingIssue], *, assignable: list[EngagementManager]) -> dict[int, Suggestion]:
    """Issue id → suggested EM (one of `assignable`, see selectors.People) and segment; each suggestion
    counts towards the load of the next ones."""
    issues = list(issues)
    coverage = _coverage(
        (t for issue in issues if (t := _territory(issue))), {em.pk: em for em in assignable}
    )
    load = open_issue_counts(assignable)
    median = statistics.median(load.values()) if load else 0
    suggestions = {}
    for issue in issues:
        suggestion = _suggest_one(issue, coverage, load, median)
        suggestions[issue.pk] = suggestion
        if suggestion.engagement_manager and issue.engagement_manager_id is None:
            load[suggestion.engagement_manager.pk] = load.get(suggestion.engagement_manager.pk, 0) + 1
    return suggestions


def _suggest_one(issue: ScopingIssue, coverage: _Coverage, load: dict[int, int], median: float) -> Suggestion:
    territory = _territory(issue)
    segment = issue.segment or (territory.segment if territory else "")
    if issue.engagement_manager is not None:
        assigned = issue.engagement_manager.gitlab_username in issue.assignee_usernames
        reason = "Already assigned in GitLab" if assigned else "Engagement manager of the linked opportunity"
        return Suggestion(issue.engagement_manager, segment, reason)
    if territory is None:
        account = issue.opportunity.account if issue.opportunity else None
        reason = (
            "No opportunity linked"
            if account is None
            else f"Territory {account.sales_territory!r} is not mapped"
        )
        return Suggestion(None, segment, reason)
    roles = coverage.by_territory.get(territory.pk, {})
    primary = next(iter(roles.get(AssignmentRole.PRIMARY, [])), None)
    covering = {em.pk: em for ems in roles.values() for em in ems}
    candidates = _by_load({**coverage.by_segment.get(territory.segment, {}), **covering}.values(), load)
    if primary and load.get(primary.pk, 0) >= median + WELL_ABOVE_MEDIAN and candidates:
        chosen = candidates[0][0]
        if chosen != primary:
            reason = (
                f"{primary} (primary for {territory.name}) carries {load.get(primary.pk, 0)} open issues, "
                f"well above the team's median of {median:g}; {chosen} has the fewest in {territory.segment}"
            )
            return Suggestion(chosen, territory.segment, reason, candidates)
    chosen = primary or next(iter(roles.get(AssignmentRole.BACKUP, [])), None)
    if chosen is None:
        return Suggestion(None, territory.segment, f"No EM works {territory.name}", candidates)
    role = "Primary" if chosen == primary else "Backup"
    return Suggestion(chosen, territory.segment, f"{role} for {territory.name}", candidates)


def _by_load(
    ems: Iterable[EngagementManager], load: dict[int, int]
) -> tuple[tuple[EngagementManager, int], ...]:
    return tuple(sorted(((em, load[em.pk]) for em in ems), key=lambda pair: (pair[1], pair[0].name)))
