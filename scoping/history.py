"""An issue's history in one place: who changed what and when, from where, rule firings with their comments,
what became of each write-back, and time spent per stage — all read from IssueChange and OpportunityChange."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import OpportunityChange
from psplan.audit import ChangeSource
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import IssueChange, ScopingIssue

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


def person(user: AbstractBaseUser | None, *, default: str = "PS Plan") -> str:
    """People by name: the EM's name, else the user's full name, else their sign-in."""
    if user is None:
        return default
    engagement_manager = getattr(user, "engagement_manager", None)
    return (engagement_manager.name if engagement_manager else "") or user.get_full_name() or user.username


def issue_timeline(issue: ScopingIssue) -> IssueTimeline:
    """Every recorded change of an issue, newest first, and the stages it went through, oldest first."""
    changes = list(
        IssueChange.objects.filter(issue=issue)
        .select_related("actor__engagement_manager", "write__rule_action")
        .order_by("-changed_at", "-id")[:TIMELINE_LIMIT]
    )
    entries = [
        *(_change_entry(change) for change in changes),
        *_opportunity_entries(issue),
        TimelineEntry(when=issue.created_at, who="GitLab", what="Issue created", source=ChangeSource.GITLAB),
    ]
    entries.sort(key=lambda entry: entry.when, reverse=True)
    return IssueTimeline(entries=entries, stages=_stage_spans(issue, changes))


def shown(field: str, value: str) -> str:
    """A stored value as people read it: stage and status labels, a dash for nothing."""
    return _VALUE_NAMES.get(field, {}).get(value, value) or "—"


def _change_entry(change: IssueChange) -> TimelineEntry:
    write = change.write
    rule = write.rule_action if write is not None else None
    who = f"Closing rule: {rule.get_rule_display()}" if rule else person(change.actor, default=change.who)
    name = FIELD_NAMES.get(change.field, change.field)
    return TimelineEntry(
        when=change.changed_at,
        who=who,
        what=f"{name}: {shown(change.field, change.old_value)} → {shown(change.field, change.new_value)}",
        stage=change.new_value if change.field == "stage" else "",
        note=change.note or (write.note if write is not None else ""),
        write_status=write.status if write is not None else "",
        source=change.get_source_display(),
    )


def _opportunity_entries(issue: ScopingIssue) -> list[TimelineEntry]:
    if issue.opportunity_id is None:
        return []
    changes = OpportunityChange.objects.filter(opportunity_id=issue.opportunity_id).select_related(
        "actor__engagement_manager", "write"
    )
    return [
        TimelineEntry(
            when=change.changed_at,
            who=person(change.actor, default=change.who),
            what=f"Opportunity {change.field}: {change.old_value or '—'} → {change.new_value or '—'}",
            write_status=change.write.status if change.write is not None else "",
            source=change.get_source_display(),
        )
        for change in changes[:TIMELINE_LIMIT]
    ]


def _stage_spans(issue: ScopingIssue, changes: list[IssueChange]) -> list[StageSpan]:
    """Stages from the recorded stage changes; before the first one the issue sat in the stage it left."""
    moves = [change for change in reversed(changes) if change.field == "stage"]
    first = _stage(moves[0].old_value) if moves else Stage(issue.stage)
    entered = [(issue.created_at, first), *((move.changed_at, _stage(move.new_value)) for move in moves)]
    return [
        StageSpan(stage=stage, entered_at=when, left_at=entered[n + 1][0] if n + 1 < len(entered) else None)
        for n, (when, stage) in enumerate(entered)
    ]


def _stage(value: str) -> Stage:
    return Stage(value) if value in Stage.values else Stage.OPEN
