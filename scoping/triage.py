"""Triage suggestions: the EM who works the account's Sales Territory, balanced by open load."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q

from opportunities.choices import AssignmentRole
from opportunities.models import EngagementManager, TerritoryAssignment
from scoping.choices import IssueState
from scoping.models import ScopingIssue

# A backup EM takes the issue when the primary already carries this many more open issues.
LOAD_BALANCE_MARGIN = 5


@dataclass(frozen=True)
class Suggestion:
    engagement_manager: EngagementManager | None
    segment: str
    reason: str


def open_issue_counts() -> dict[int, int]:
    """EM id → open scoping issues assigned to them, in one query."""
    rows = EngagementManager.objects.annotate(
        open_issues=Count(
            "scoping_issues",
            filter=Q(scoping_issues__state=IssueState.OPENED, scoping_issues__removed_at__isnull=True),
        )
    ).values_list("pk", "open_issues")
    return dict(rows)


def suggest(issues: Iterable[ScopingIssue]) -> dict[int, Suggestion]:
    """Issue id → suggested EM and segment, from its opportunity's account territory."""
    issues = list(issues)
    territory_ids = {
        issue.opportunity.account.territory_id
        for issue in issues
        if issue.opportunity and issue.opportunity.account and issue.opportunity.account.territory_id
    }
    assignments: dict[int, dict[str, EngagementManager]] = {}
    for assignment in TerritoryAssignment.objects.filter(territory_id__in=territory_ids).select_related(
        "engagement_manager"
    ):
        assignments.setdefault(assignment.territory_id, {})[assignment.role] = assignment.engagement_manager
    load = open_issue_counts()
    return {issue.pk: _suggest_one(issue, assignments, load) for issue in issues}


def _suggest_one(issue: ScopingIssue, assignments: dict, load: dict[int, int]) -> Suggestion:
    account = issue.opportunity.account if issue.opportunity else None
    territory = account.territory if account else None
    if territory is None:
        reason = (
            "No opportunity linked"
            if account is None
            else f"Territory {account.sales_territory!r} is not mapped"
        )
        return Suggestion(None, issue.segment, reason)
    roles = assignments.get(territory.pk, {})
    primary, backup = roles.get(AssignmentRole.PRIMARY), roles.get(AssignmentRole.BACKUP)
    if primary and backup and load.get(primary.pk, 0) - load.get(backup.pk, 0) >= LOAD_BALANCE_MARGIN:
        return Suggestion(
            backup, territory.segment, f"Backup for {territory.name}; {primary} is carrying more"
        )
    chosen = primary or backup
    reason = (
        f"{'Primary' if chosen is primary else 'Backup'} for {territory.name}" if chosen else "No EM works it"
    )
    return Suggestion(chosen, territory.segment, reason)
