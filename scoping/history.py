"""An issue's history in one place: who changed what and when, rule firings, and time spent per stage.

Built today from the rows that exist (GitLab writes, rule firings, keep-open overrides, opportunity
changes); everything the issue page shows about the past comes from `issue_timeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from opportunities.models import OpportunityChange
from scoping import labels as label_rules
from scoping.choices import Stage
from scoping.models import GitLabWrite, KeepOpenOverride, RuleAction, ScopingIssue

TIMELINE_LIMIT = 200


@dataclass(frozen=True)
class TimelineEntry:
    when: datetime
    who: str
    what: str
    stage: str = ""
    note: str = ""
    write_status: str = ""


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
    writes = list(
        GitLabWrite.objects.filter(issue=issue)
        .select_related("created_by__engagement_manager")
        .order_by("-created_at", "-id")[:TIMELINE_LIMIT]
    )
    entries = [
        *(_write_entry(write) for write in writes),
        *_rule_entries(issue),
        *_override_entries(issue),
        *_opportunity_entries(issue),
        TimelineEntry(when=issue.created_at, who="GitLab", what="Issue created"),
    ]
    entries.sort(key=lambda entry: entry.when, reverse=True)
    return IssueTimeline(entries=entries, stages=_stage_spans(issue, writes))


def _write_entry(write: GitLabWrite) -> TimelineEntry:
    stage = _stage_added(write)
    parts = []
    if stage:
        parts.append(f"Moved to {stage.label}")
    other_labels = [
        label for label in write.add_labels if label_rules.parse_labels([label]).workflow_stage is None
    ]
    if other_labels:
        parts.append(f"Labelled {', '.join(other_labels)}")
    if write.assignee_ids is not None:
        parts.append("Assigned the engagement manager" if write.assignee_ids else "Unassigned")
    if write.state_event:
        parts.append({"close": "Closed", "reopen": "Reopened"}.get(write.state_event, write.state_event))
    return TimelineEntry(
        when=write.created_at,
        who=person(write.created_by, default="Closing rule"),
        what="; ".join(parts) or "Labels changed",
        stage=stage.value if stage else "",
        note=write.note,
        write_status=write.status,
    )


def _stage_added(write: GitLabWrite) -> Stage | None:
    if write.state_event == "close" and not any(_is_stage_label(label) for label in write.add_labels):
        return Stage.CLOSED
    return label_rules.parse_labels(write.add_labels).workflow_stage


def _is_stage_label(label: str) -> bool:
    return label_rules.parse_labels([label]).workflow_stage is not None


def _rule_entries(issue: ScopingIssue) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            when=action.applied_at,
            who="Closing rule",
            what=f"{action.get_rule_display()} ({action.reason})",
            note=f"close quarter {action.close_qtr}" if action.close_qtr else "",
        )
        for action in RuleAction.objects.filter(issue=issue)[:TIMELINE_LIMIT]
    ]


def _override_entries(issue: ScopingIssue) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            when=override.set_at,
            who=person(override.set_by),
            what=f"Keep open until {override.until:%Y-%m-%d}"
            if override.until
            else "Keep-open override cleared",
            note=override.reason,
        )
        for override in KeepOpenOverride.objects.filter(issue=issue).select_related(
            "set_by__engagement_manager"
        )[:TIMELINE_LIMIT]
    ]


def _opportunity_entries(issue: ScopingIssue) -> list[TimelineEntry]:
    if issue.opportunity_id is None:
        return []
    return [
        TimelineEntry(
            when=change.changed_at,
            who="Salesforce",
            what=f"Opportunity {change.field}: {change.old_value or '—'} → {change.new_value or '—'}",
        )
        for change in OpportunityChange.objects.filter(opportunity_id=issue.opportunity_id)[:TIMELINE_LIMIT]
    ]


def _stage_spans(issue: ScopingIssue, writes: list[GitLabWrite]) -> list[StageSpan]:
    """Stages from the moves PS Plan made; before the first one the issue sat in the stage it left."""
    moving = [write for write in reversed(writes) if _stage_added(write)]
    first = (_stage_left(moving[0]) or Stage.OPEN) if moving else Stage(issue.stage)
    entered = [(issue.created_at, first), *((write.created_at, _stage_added(write)) for write in moving)]
    return [
        StageSpan(stage=stage, entered_at=when, left_at=entered[n + 1][0] if n + 1 < len(entered) else None)
        for n, (when, stage) in enumerate(entered)
    ]


def _stage_left(write: GitLabWrite) -> Stage | None:
    return label_rules.parse_labels(write.remove_labels).workflow_stage
