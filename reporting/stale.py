"""The inactivity rule seen from leadership: who goes stale soon, who it closed, who is kept open, and
what the next rules run would do — the last from `scoping.rules` itself, as `sync --dry-run` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from psplan.audit import person_name
from psplan.fiscal import FiscalQuarter, add_months
from scoping import rules
from scoping.models import RuleAction, ScopingIssue, stale_cutoff

ISSUE_FIELDS = ("iid", "title", "last_activity_at")


def going_stale(*, as_of: datetime) -> list[dict[str, Any]]:
    """Open issues that go stale within the warning window, soonest first: what the rules flag."""
    rows = (
        ScopingIssue.objects.going_stale(as_of=as_of)
        .exclude(opportunity__is_closed=True)  # as in scoping.rules: the opportunity's fate decides those
        .values(*ISSUE_FIELDS, em_name=F("engagement_manager__name"))
        .order_by("last_activity_at", "iid")
    )
    months = settings.PSPLAN_STALE_AFTER_MONTHS
    return [{**row, "goes_stale_at": add_months(row["last_activity_at"], months)} for row in rows]


def closed_as_stale(*, quarter: FiscalQuarter) -> QuerySet:
    """Issues the inactivity rule closed since the quarter began, newest first."""
    return (
        RuleAction.objects.filter(rule=RuleAction.Rule.STALE, applied_at__gte=quarter.starts_at())
        .values(
            "applied_at",
            iid=F("issue__iid"),
            title=F("issue__title"),
            em_name=F("issue__engagement_manager__name"),
            went_stale_on=F("reason"),
            rule_close_qtr=F("close_qtr"),
            state=F("issue__state"),
            stage=F("issue__stage"),
        )
        .order_by("-applied_at", "-pk")
    )


def overrides(*, as_of: datetime, limit: int | None = None) -> list[dict[str, Any]]:
    """Open issues an EM keeps open past the inactivity rule, ending soonest first, with the reason and
    whether the override is what holds the rule back (the issue would be stale without it)."""
    rows = (
        ScopingIssue.objects.open()
        .overridden(as_of=as_of)
        .values(
            *ISSUE_FIELDS,
            "keep_open_until",
            "keep_open_set_at",
            reason=F("keep_open_reason"),
            em_name=F("engagement_manager__name"),
            first_name=F("keep_open_set_by__first_name"),
            last_name=F("keep_open_set_by__last_name"),
            username=F("keep_open_set_by__username"),
        )
        .order_by("keep_open_until", "iid")
    )
    cutoff = stale_cutoff(as_of)
    return [
        {
            **row,
            "set_by": person_name(row["first_name"], row["last_name"], row["username"]),
            "stale_without_it": row["last_activity_at"] < cutoff,
        }
        for row in (rows[:limit] if limit else rows)
    ]


def counts(*, as_of: datetime, quarter: FiscalQuarter) -> dict[str, int]:
    """How many issues are kept open, and how many the inactivity rule closed this quarter."""
    return {
        "overrides": ScopingIssue.objects.open().overridden(as_of=as_of).count(),
        "closed_as_stale": RuleAction.objects.filter(
            rule=RuleAction.Rule.STALE, applied_at__gte=quarter.starts_at()
        ).count(),
    }


@dataclass(frozen=True)
class PreviewRow:
    """One change the next rules run would make, and why."""

    iid: int
    title: str
    rule: str
    why: str
    close_qtr: str
    add_labels: tuple[str, ...]
    remove_labels: tuple[str, ...]
    closes: bool
    comment: str
    held_back: bool  # over this run's cap: it waits for a later run


@dataclass(frozen=True)
class Preview:
    as_of: datetime
    rows: list[PreviewRow]
    cap: int
    already_done: int


def preview(*, as_of: datetime) -> Preview:
    """What `manage.py sync --dry-run` would show for the rules now: the same code, writing nothing."""
    result = rules.apply_rules(as_of=as_of, dry_run=True)
    planned = [(change, False) for change in result.changes] + [(c, True) for c in result.held_back]
    issues = {
        row["pk"]: row
        for row in ScopingIssue.objects.filter(pk__in=[change.issue_id for change, _ in planned]).values(
            "pk",
            "title",
            "last_activity_at",
            opportunity_name=F("opportunity__name"),
            opportunity_closed_on=F("opportunity__close_date"),
        )
    }
    labels = dict(RuleAction.Rule.choices)
    return Preview(
        as_of=as_of,
        cap=result.cap,
        already_done=len(result.already_done),
        rows=[
            PreviewRow(
                iid=change.iid,
                title=issues.get(change.issue_id, {}).get("title", ""),
                rule=labels.get(change.rule, change.rule),
                why=_why(change, issues.get(change.issue_id)),
                close_qtr=change.close_qtr,
                add_labels=change.add_labels,
                remove_labels=change.remove_labels,
                closes=change.close,
                comment=change.comment,
                held_back=held_back,
            )
            for change, held_back in planned
        ],
    )


def _why(change: rules.PlannedChange, issue: dict[str, Any] | None) -> str:
    """The firing's reason in words: the stale rule's reason is the day the issue went stale."""
    if issue is None:
        return change.reason
    if change.rule == RuleAction.Rule.STALE:
        quiet_since = timezone.localdate(issue["last_activity_at"])
        return f"No activity since {quiet_since}: stale since {change.reason}"
    outcome = "won" if change.rule == RuleAction.Rule.OPPORTUNITY_WON else "lost"
    return f"{issue['opportunity_name']} closed {outcome} on {issue['opportunity_closed_on']}"
