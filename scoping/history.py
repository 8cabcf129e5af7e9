"""An issue's history in one place: who changed what and when, from where, rule firings with their comments,
what became of each write-back, and time spent per stage — all read from IssueChange and OpportunityChange."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import OpportunityChange
from psplan.audit import ChangeSource, changed_by, source_name
from psplan.prepared import PreparedRows
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import IssueChange, RuleAction, ScopingIssue

TIMELINE_LIMIT = 200
FIELD_NAMES = {
    "stage": "Stage",
    "segment": "Segment",
    "em_status": "EM status",
    "close_qtr": "Close quarter",
    "state": "State",
    "engagement_manager": "Engagement manager",
    "keep_open_until": "Keep open until",
}
_VALUE_NAMES = {
    "stage": dict(Stage.choices),
    "segment": dict(Segment.choices),
    "em_status": dict(EMStatus.choices),
    "state": dict(IssueState.choices),
}


@dataclass(frozen=True)
class TimelineEntry:
    when: datetime
    who: str
    what: str
    stage: str = ""
    note: str = ""
    write_status: str = ""
    write_error: str = ""
    system: str = "GitLab"  # where the change's write goes
    source: str = ""


@dataclass(frozen=True)
class StageSpan:
    stage: Stage
    entered_at: datetime
    left_at: datetime | None

    @property
    def duration(self) -> timedelta:
        return (self.left_at or timezone.now()) - self.entered_at


@dataclass(frozen=True)
class IssueTimeline:
    entries: list[TimelineEntry]
    stages: list[StageSpan]


def issue_timeline(issue: ScopingIssue) -> IssueTimeline:
    """Every recorded change of an issue, newest first, and the stages it went through, oldest first."""
    changes = _ISSUE_CHANGES(issue=issue.pk)
    entries = [
        *(_change_entry(change) for change in changes),
        *_opportunity_entries(issue),
        TimelineEntry(when=issue.created_at, who="GitLab", what="Issue created", source=ChangeSource.GITLAB),
    ]
    entries.sort(key=lambda entry: entry.when, reverse=True)
    return IssueTimeline(entries=entries, stages=_stage_spans(issue, changes))


# Read as values(): a busy issue has hundreds of changes, and model instances of each change, its actor,
# their EM, its write and the rule behind it cost several times the query.
_CHANGE_COLUMNS = (
    "changed_at",
    "field",
    "old_value",
    "new_value",
    "source",
    "actor_id",
    "actor_name",
    "actor__username",
    "actor__first_name",
    "actor__last_name",
    "actor__engagement_manager__name",
    "write_id",
    "write__status",
    "write__last_error",
)
_RULE_NAMES = dict(RuleAction.Rule.choices)


def _issue_changes(issue: int) -> QuerySet:
    return (
        IssueChange.objects.filter(issue=issue)
        .order_by("-changed_at", "-id")
        .values(*_CHANGE_COLUMNS, "note", "write__note", rule=F("write__rule_action__rule"))[:TIMELINE_LIMIT]
    )


def _opportunity_changes(opportunity: int) -> QuerySet:
    return OpportunityChange.objects.filter(opportunity=opportunity).values(*_CHANGE_COLUMNS)[:TIMELINE_LIMIT]


# Prepared (see psplan.prepared): the issue page reads both on every request, and writing their SQL cost
# as much as running it.
_ISSUE_CHANGES = PreparedRows(_issue_changes, issue=(1, 2))
_OPPORTUNITY_CHANGES = PreparedRows(_opportunity_changes, opportunity=(1, 2))


def shown(field: str, value: str) -> str:
    """A stored value as people read it: stage and status labels, a dash for nothing."""
    return _VALUE_NAMES.get(field, {}).get(value, value) or "—"


def _actor(change: dict[str, Any]) -> str:
    """`person()` of a change's actor, else who the other system named, else the system (ChangeRecord.who)."""
    return change["actor__engagement_manager__name"] or changed_by(
        first_name=change["actor__first_name"],
        last_name=change["actor__last_name"],
        username=change["actor__username"],
        actor_name=change["actor_name"],
        source=change["source"],
    )


def _change_entry(change: dict[str, Any]) -> TimelineEntry:
    rule = change["rule"]
    field = change["field"]
    has_write = change["write_id"] is not None
    return TimelineEntry(
        when=change["changed_at"],
        who=f"Closing rule: {_RULE_NAMES.get(rule, rule)}" if rule else _actor(change),
        what=f"{FIELD_NAMES.get(field, field)}: {shown(field, change['old_value'])} → "
        f"{shown(field, change['new_value'])}",
        stage=change["new_value"] if field == "stage" else "",
        note=change["note"] or (change["write__note"] if has_write else ""),
        write_status=change["write__status"] if has_write else "",
        write_error=change["write__last_error"] if has_write else "",
        source=source_name(change["source"]),
    )


def _opportunity_entries(issue: ScopingIssue) -> list[TimelineEntry]:
    if issue.opportunity_id is None:
        return []
    return [
        TimelineEntry(
            when=change["changed_at"],
            who=_actor(change),
            what=f"Opportunity {change['field']}: {change['old_value'] or '—'} → {change['new_value'] or '—'}",
            write_status=change["write__status"] if change["write_id"] is not None else "",
            write_error=change["write__last_error"] if change["write_id"] is not None else "",
            system="Salesforce",
            source=source_name(change["source"]),
        )
        for change in _OPPORTUNITY_CHANGES(opportunity=issue.opportunity_id)
    ]


def _stage_spans(issue: ScopingIssue, changes: list[dict[str, Any]]) -> list[StageSpan]:
    """Stages from the recorded stage changes; before the first one the issue sat in the stage it left."""
    moves = [change for change in reversed(changes) if change["field"] == "stage"]
    first = _stage(moves[0]["old_value"]) if moves else Stage(issue.stage)
    entered = [
        (issue.created_at, first),
        *((move["changed_at"], _stage(move["new_value"])) for move in moves),
    ]
    return [
        StageSpan(stage=stage, entered_at=when, left_at=entered[n + 1][0] if n + 1 < len(entered) else None)
        for n, (when, stage) in enumerate(entered)
    ]


def _stage(value: str) -> Stage:
    return _STAGES.get(value, Stage.OPEN)


_STAGES = {stage.value: stage for stage in Stage}
