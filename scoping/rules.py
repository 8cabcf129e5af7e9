"""The closing rules of CONTRACT.md as one service: the opportunity's fate, inactivity, and the cap.

- Opportunity closed won/lost → `proposal::Closed_Won`/`Closed_Lost`, `close_qtr` of its CloseDate, closed.
- No activity for PSPLAN_STALE_AFTER_MONTHS → Closed_Lost, `close_qtr` of the day it went stale,
  closed, with a comment saying why and how to undo — unless a keep-open override is live.
- Each firing is recorded once per reason (RuleAction), so an EM's later edits are never undone.
- One run changes at most PSPLAN_MAX_AUTO_CLOSES_PER_RUN issues: a broken clock must not close all.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone

from opportunities.choices import SyncKind
from opportunities.models import Opportunity, SyncRun
from psplan.fiscal import quarter_code
from psplan.queue import WriteStatus
from scoping import labels as label_rules
from scoping import services
from scoping.choices import IssueState, ProblemKind, Stage
from scoping.models import GitLabWrite, RuleAction, ScopingIssue

logger = logging.getLogger(__name__)
Rule = RuleAction.Rule
RETRY_REFUSED_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class PlannedChange:
    """What one rule firing does to one issue; an empty change only records the firing."""

    issue_id: int
    iid: int
    rule: str
    reason: str
    close_qtr: str = ""
    intent: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    close: bool = False
    comment: str = ""

    @property
    def writes(self) -> bool:
        """Whether it sends anything to GitLab."""
        return bool(self.add_labels or self.remove_labels or self.close or self.comment)


@dataclass(frozen=True)
class GoingStale:
    """An open issue that goes stale within PSPLAN_STALE_WARNING_DAYS: flagged for its EM."""

    iid: int
    engagement_manager: str  # GitLab username, "" when the issue has no EM
    goes_stale_at: datetime


@dataclass
class RulesResult:
    """One run of the rules: what changed (or would, on a dry run), what waits, what is flagged."""

    as_of: datetime
    dry_run: bool
    cap: int
    changes: list[PlannedChange] = field(default_factory=list)
    held_back: list[PlannedChange] = field(default_factory=list)
    already_done: list[PlannedChange] = field(default_factory=list)
    going_stale: list[GoingStale] = field(default_factory=list)
    run: SyncRun | None = None

    @property
    def cap_hit(self) -> bool:
        return bool(self.held_back)

    @property
    def counts(self) -> dict[str, int | bool]:
        rules = Counter(change.rule for change in self.changes)
        return {
            "won": rules[Rule.OPPORTUNITY_WON],
            "lost": rules[Rule.OPPORTUNITY_LOST],
            "stale": rules[Rule.STALE],
            "closed": sum(change.close for change in self.changes),
            "comments": sum(bool(change.comment) for change in self.changes),
            "already_done": len(self.already_done),
            "held_back_by_cap": len(self.held_back),
            "cap": self.cap,
            "cap_hit": self.cap_hit,
            "going_stale": len(self.going_stale),
        }


def apply_rules(
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    write_back: bool = True,
) -> RulesResult:
    """Apply the closing rules once; a dry run lists what would change and writes nothing at all.

    `limit` overrides PSPLAN_MAX_AUTO_CLOSES_PER_RUN for this run. The cap counts every firing
    that writes to GitLab; the rest wait for the next run and the run records that the cap was hit.
    Without `write_back` the changes are made here only (the demo, which has no GitLab).
    """
    as_of = as_of or timezone.now()
    cap = settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN if limit is None else max(0, limit)
    planned = plan_changes(as_of=as_of)
    writing = [change for change in planned if change.writes]
    result = RulesResult(
        as_of=as_of,
        dry_run=dry_run,
        cap=cap,
        changes=writing[:cap],
        held_back=writing[cap:],
        already_done=[change for change in planned if not change.writes],
        going_stale=going_stale(as_of=as_of),
    )
    if dry_run:
        return result
    with SyncRun.running(SyncKind.RULES) as run:
        result.run = run
        apply = functools.partial(_apply, as_of=as_of, write_back=write_back)
        result.changes = [done for change in result.changes if (done := apply(change))]
        result.already_done = [done for change in result.already_done if (done := apply(change))]
        if result.cap_hit:
            logger.warning("Closing rules stopped at the cap of %d; %d wait", cap, len(result.held_back))
        run.finish(counts=result.counts)
    return result


def plan_changes(*, as_of: datetime) -> list[PlannedChange]:
    """Every rule firing due now: opportunity outcomes first, then stale issues, oldest first."""
    decided = (
        ScopingIssue.objects.current()
        .filter(opportunity__is_closed=True)
        # Years of closed deals have fired long ago: skipping them in SQL keeps a run (and the stale
        # report's preview) proportional to what is new, not to the whole history.
        .exclude(_outcome_fired(as_of))
        .select_related("opportunity")
        .order_by("iid")
    )
    stale = (
        ScopingIssue.objects.stale(as_of=as_of)
        .exclude(opportunity__is_closed=True)  # the opportunity's fate decides those
        .order_by("last_activity_at", "iid")
    )
    issues = [*decided, *stale]
    fired = set(
        _fired(as_of)
        .filter(issue__in=[issue.pk for issue in issues])
        .values_list("issue_id", "rule", "reason")
    )
    planned = (_plan_for(issue, as_of=as_of) for issue in issues)
    return [
        change for change in planned if change and (change.issue_id, change.rule, change.reason) not in fired
    ]


def _fired(as_of: datetime) -> QuerySet[RuleAction]:
    """Firings that stand: all but those whose write GitLab refused a while ago."""
    return RuleAction.objects.exclude(_refused_a_while_ago(as_of))


def _outcome_fired(as_of: datetime) -> Exists:
    """Whether an issue's closed opportunity already fired its rule for this close: the rule and reason
    `_outcome_plan` would give, worked out in SQL (a mismatch only means the issue is planned in Python)."""
    opportunity = "issue__opportunity__"
    return Exists(
        _fired(as_of).filter(
            Q(rule=Rule.OPPORTUNITY_WON, **{f"{opportunity}is_won": True})
            | Q(rule=Rule.OPPORTUNITY_LOST, **{f"{opportunity}is_won": False}),
            issue=OuterRef("pk"),
            reason=Concat(
                f"{opportunity}salesforce_id",
                Value(":"),
                Coalesce(Cast(f"{opportunity}close_date", CharField()), Value("")),
                output_field=CharField(),
            ),
        )
    )


def _refused_a_while_ago(as_of: datetime) -> Exists:
    """Firings whose write GitLab refused over an hour ago: they fire again (someone may have fixed
    the cause, such as a missing close_qtr label); waiting keeps a lasting cause from adding a failed
    write to every sync."""
    return Exists(
        GitLabWrite.objects.filter(
            rule_action=OuterRef("pk"), status=WriteStatus.FAILED, created_at__lt=as_of - RETRY_REFUSED_AFTER
        )
    )


def going_stale(*, as_of: datetime) -> list[GoingStale]:
    """Open issues that go stale within the warning window (their EM should act or set keep-open)."""
    issues = (
        ScopingIssue.objects.going_stale(as_of=as_of)
        .exclude(opportunity__is_closed=True)
        .select_related("engagement_manager")
        .order_by("last_activity_at", "iid")
    )
    return [
        GoingStale(
            iid=issue.iid,
            engagement_manager=issue.engagement_manager.gitlab_username if issue.engagement_manager else "",
            goes_stale_at=issue.goes_stale_at,
        )
        for issue in issues
    ]


def _plan_for(issue: ScopingIssue, *, as_of: datetime) -> PlannedChange | None:
    opportunity = issue.opportunity if issue.opportunity_id else None
    if opportunity is not None and opportunity.is_closed:
        return _outcome_plan(issue, opportunity)
    if issue.is_stale(as_of=as_of):
        return _stale_plan(issue)
    return None


def _outcome_plan(issue: ScopingIssue, opportunity: Opportunity) -> PlannedChange:
    stage = Stage.CLOSED_WON if opportunity.is_won else Stage.CLOSED_LOST
    rule = Rule.OPPORTUNITY_WON if opportunity.is_won else Rule.OPPORTUNITY_LOST
    outcome = "won" if opportunity.is_won else "lost"
    note = (
        f"PS Plan marked this issue {label_rules.workflow_label(stage)}: its Salesforce opportunity "
        f"[{opportunity.name}]({opportunity.salesforce_url}) closed {outcome} on {opportunity.close_date}."
    )
    # A re-closed opportunity gets a new CloseDate, so it is a new reason and fires again.
    reason = f"{opportunity.salesforce_id}:{opportunity.close_date or ''}"
    return _closing_plan(
        issue, rule=rule, reason=reason, stage=stage, code=quarter_code(opportunity.close_date), note=note
    )


def went_stale_at(issue: ScopingIssue) -> datetime:
    """Last activity + the stale months, or the end of an expired keep-open override if later."""
    moment = issue.goes_stale_at
    if issue.keep_open_until is not None:
        override_end = timezone.make_aware(
            datetime.combine(issue.keep_open_until + timedelta(days=1), time.min)
        )
        moment = max(moment, override_end)
    return moment


def _stale_plan(issue: ScopingIssue) -> PlannedChange:
    moment = went_stale_at(issue)
    day = timezone.localdate(moment)
    code = quarter_code(day)
    months = settings.PSPLAN_STALE_AFTER_MONTHS
    lost = label_rules.workflow_label(Stage.CLOSED_LOST)
    note = (
        f"PS Plan closed this issue as {lost} ({label_rules.close_qtr_label(code)}): it has had no "
        f"activity since {timezone.localdate(issue.last_activity_at)}, and the team counts a scoping "
        f"issue with no activity for {months} months as lost.\n\n"
        "Still active? Reopen this issue: your reopen counts as activity and restarts the clock. "
        "To keep a quiet issue open, set “keep open until” on it in PS Plan."
    )
    # The reason is the day it went stale: a reopen moves it, so the rule can fire again later.
    return _closing_plan(
        issue, rule=Rule.STALE, reason=day.isoformat(), stage=Stage.CLOSED_LOST, code=code, note=note
    )


def _closing_plan(
    issue: ScopingIssue, *, rule: str, reason: str, stage: Stage, code: str, note: str
) -> PlannedChange:
    """The smallest change that leaves the issue in `stage`, with a close_qtr, closed."""
    parsed = label_rules.parse_labels(issue.labels)
    # Any spelling of the outcome (`proposal:Closed_Won`) counts as done; rewriting it is noise.
    two_stages = any(problem.kind == ProblemKind.TWO_WORKFLOW_LABELS for problem in parsed.problems)
    stage_done = parsed.workflow_stage == stage and not two_stages
    intent: dict[str, object] = {} if stage_done else {"stage": stage.value}
    if code and not (stage_done and parsed.close_qtr):
        # An outcome someone already set keeps their close_qtr; otherwise the rule's quarter.
        intent["close_qtr"] = code
    close = issue.state == IssueState.OPENED
    if close:
        intent["state"] = IssueState.CLOSED.value
    change = label_rules.change_for_intent(issue.labels, intent)
    return PlannedChange(
        issue_id=issue.pk,
        iid=issue.iid,
        rule=rule,
        reason=reason,
        close_qtr=code,
        intent=intent if (change or close) else {},
        add_labels=change.add,
        remove_labels=change.remove,
        close=close,
        comment=note if (change or close) else "",
    )


def _apply(change: PlannedChange, *, as_of: datetime, write_back: bool) -> PlannedChange | None:
    """Re-plan on the locked row (someone may have edited it since) and apply; None if moot now."""
    with transaction.atomic():
        issue = (
            ScopingIssue.objects.select_for_update(of=("self",))
            .select_related("opportunity")
            .filter(pk=change.issue_id)
            .first()
        )
        fresh = _plan_for(issue, as_of=as_of) if issue is not None else None
        if fresh is None or (fresh.rule, fresh.reason) != (change.rule, change.reason):
            return None
        action = services.close_issue_by_rule(
            issue=issue,
            rule=fresh.rule,
            reason=fresh.reason,
            intent=fresh.intent,
            note=fresh.comment,
            close_qtr=fresh.close_qtr,
            write_back=write_back,
        )
        return fresh if action is not None else None
