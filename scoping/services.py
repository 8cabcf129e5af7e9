"""Writes to scoping issues: derived fields, links, data-quality problems, and EM edits via the outbox."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Substr
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import EngagementManager, Opportunity
from psplan.fiscal import quarter_code
from scoping import labels as label_rules
from scoping.choices import EMStatus, IssueState, ProblemKind, Stage, WriteStatus
from scoping.labels import LabelChange
from scoping.links import issue_iid_in, opportunity_ids_in, same_salesforce_id
from scoping.models import DataQualityProblem, GitLabWrite, KeepOpenOverride, RuleAction, ScopingIssue

DERIVED_FIELDS = (
    "stage",
    "close_qtr",
    "segment",
    "em_status",
    "public_sector",
    "engagement_manager",
    "opportunity",
)


def derived_label_fields(*, labels: Iterable[str], state: str) -> dict[str, object]:
    """The columns PS Plan reads off an issue's labels and state."""
    parsed = label_rules.parse_labels(labels)
    return {
        "stage": parsed.stage_for_state(state),
        "close_qtr": parsed.close_qtr,
        "segment": parsed.segment or "",
        "em_status": parsed.em_status or "",
        "public_sector": parsed.public_sector,
    }


def refresh_issues(*, issues: QuerySet[ScopingIssue] | None = None) -> int:
    """Recompute labels-derived fields, EM, opportunity and problems for issues; returns rows changed."""
    issues = (issues if issues is not None else ScopingIssue.objects.all()).select_related(
        "engagement_manager", "opportunity"
    )
    ems_by_username = {
        em.gitlab_username.lower(): em for em in EngagementManager.objects.exclude(gitlab_username="")
    }
    rows = list(issues)
    opportunities = _opportunities_for(rows)
    changed, problems = [], []
    for issue in rows:
        before = [getattr(issue, name) for name in DERIVED_FIELDS]
        for name, value in derived_label_fields(labels=issue.labels, state=issue.state).items():
            setattr(issue, name, value)
        problems += _label_problems(issue)
        problems += _link_opportunity(issue, opportunities)
        problems += _resolve_engagement_manager(issue, ems_by_username)
        if [getattr(issue, name) for name in DERIVED_FIELDS] != before:
            changed.append(issue)
    with transaction.atomic():
        ScopingIssue.objects.bulk_update(changed, DERIVED_FIELDS, batch_size=500)
        DataQualityProblem.objects.filter(issue__in=[issue.pk for issue in rows]).delete()
        DataQualityProblem.objects.bulk_create(problems, batch_size=500)
    return len(changed)


@dataclass
class _Candidates:
    """Opportunities named by issues (by 15-char id) and those whose link names an issue (by iid)."""

    by_id15: dict[str, Opportunity] = field(default_factory=dict)
    by_iid: dict[int, list[Opportunity]] = field(default_factory=dict)


def _opportunities_for(issues: list[ScopingIssue]) -> _Candidates:
    ids = {oid[:15] for issue in issues for oid in opportunity_ids_in(issue.description)}
    candidates = (
        Opportunity.objects.select_related("engagement_manager")
        .annotate(id15=Substr("salesforce_id", 1, 15))
        .filter(Q(id15__in=ids) | ~Q(scoping_issue_link=""))
        .order_by("salesforce_id")
    )
    iids = {issue.iid for issue in issues}
    found = _Candidates()
    for opportunity in candidates:
        if opportunity.id15 in ids:
            found.by_id15[opportunity.id15] = opportunity
        iid = issue_iid_in(opportunity.scoping_issue_link)
        if iid in iids:
            found.by_iid.setdefault(iid, []).append(opportunity)
    return found


def _label_problems(issue: ScopingIssue) -> list[DataQualityProblem]:
    parsed = label_rules.parse_labels(issue.labels)
    found = (*parsed.problems, *label_rules.state_problems(parsed, issue.state))
    return [
        DataQualityProblem(issue=issue, kind=p.kind, labels=list(p.labels), message=p.message) for p in found
    ]


def _link_opportunity(issue: ScopingIssue, opportunities: _Candidates) -> list[DataQualityProblem]:
    """Link from either side; when the two sides name different records, keep the issue's and say so."""
    named = [opportunities.by_id15.get(oid[:15]) for oid in opportunity_ids_in(issue.description)]
    from_description = next((o for o in named if o is not None), None)
    linking = opportunities.by_iid.get(issue.iid, [])
    if from_description is None and len(linking) > 1:
        # Several opportunities claim this issue and its description names none: no guessing.
        issue.opportunity = None
        return [
            DataQualityProblem(
                issue=issue,
                opportunity=linking[0],
                kind=ProblemKind.OPPORTUNITY_LINK_MISMATCH,
                message=f"{', '.join(o.salesforce_id for o in linking)} all link to this issue; "
                "name the right opportunity in the issue description",
            )
        ]
    from_link = next(
        (
            o
            for o in linking
            if from_description and same_salesforce_id(o.salesforce_id, from_description.salesforce_id)
        ),
        linking[0] if linking else None,
    )
    issue.opportunity = from_description or from_link
    problems = []
    if opportunity_ids_in(issue.description) and from_description is None:
        problems.append(
            DataQualityProblem(
                issue=issue,
                kind=ProblemKind.OPPORTUNITY_NOT_FOUND,
                message=f"The description names {opportunity_ids_in(issue.description)[0]}, which PS Plan has not mirrored",
            )
        )
    if (
        from_description
        and from_link
        and not same_salesforce_id(from_description.salesforce_id, from_link.salesforce_id)
    ):
        problems.append(
            DataQualityProblem(
                issue=issue,
                opportunity=from_link,
                kind=ProblemKind.OPPORTUNITY_LINK_MISMATCH,
                message=f"The description names {from_description.salesforce_id} but {from_link.salesforce_id} links to this issue",
            )
        )
    return problems


def _resolve_engagement_manager(
    issue: ScopingIssue, ems_by_username: dict[str, EngagementManager]
) -> list[DataQualityProblem]:
    """The assignee who is a known EM, else the opportunity's EM; a disagreement is a problem."""
    assigned = next(
        (ems_by_username[u.lower()] for u in issue.assignee_usernames if u.lower() in ems_by_username), None
    )
    from_opportunity = issue.opportunity.engagement_manager if issue.opportunity else None
    issue.engagement_manager = assigned or from_opportunity
    if assigned and from_opportunity and assigned != from_opportunity:
        return [
            DataQualityProblem(
                issue=issue,
                opportunity=issue.opportunity,
                kind=ProblemKind.EM_MISMATCH,
                message=f"Assigned to {assigned} in GitLab, but Salesforce names {from_opportunity}",
            )
        ]
    return []


# --- EM edits: the local row and an outbox entry change together --------------------------------


def _queue_write(
    *,
    issue: ScopingIssue,
    change: LabelChange,
    actor: AbstractBaseUser | None,
    state_event: str = "",
    **extra,
) -> GitLabWrite | None:
    if not change and not state_event and not extra:
        return None
    issue.labels = change.applied_to(issue.labels)
    if state_event:
        issue.state = IssueState.CLOSED if state_event == "close" else IssueState.OPENED
        issue.closed_at = timezone.now() if state_event == "close" else None
    for name, value in derived_label_fields(labels=issue.labels, state=issue.state).items():
        setattr(issue, name, value)
    issue.save()
    write = GitLabWrite.objects.create(
        issue=issue,
        add_labels=list(change.add),
        remove_labels=list(change.remove),
        state_event=state_event,
        created_by=actor,
        **extra,
    )
    transaction.on_commit(_deliver_soon)
    return write


def _deliver_soon() -> None:
    from scoping.tasks import deliver_gitlab_writes

    deliver_gitlab_writes.delay()


@transaction.atomic
def set_issue_stage(
    *, issue: ScopingIssue, stage: Stage | str, actor: AbstractBaseUser | None
) -> GitLabWrite | None:
    """Move an issue to a board column with GitLab board semantics (swap labels, close, reopen)."""
    stage = Stage(stage)
    change = label_rules.change_for_stage(issue.labels, stage)
    if stage in Stage.outcomes() and not label_rules.parse_labels(issue.labels).close_qtr:
        change = change | label_rules.change_for_close_qtr(issue.labels, quarter_code(timezone.localdate()))
    closing = stage in Stage.closing()
    state_event = ""
    if closing and issue.state == IssueState.OPENED:
        state_event = "close"
    elif not closing and issue.state == IssueState.CLOSED:
        state_event = "reopen"
    return _queue_write(issue=issue, change=change, actor=actor, state_event=state_event)


@transaction.atomic
def set_issue_segment(
    *, issue: ScopingIssue, segment: Segment | str | None, actor: AbstractBaseUser | None
) -> GitLabWrite | None:
    """Set (or clear) the issue's `Segment::` label."""
    return _queue_write(
        issue=issue, change=label_rules.change_for_segment(issue.labels, segment), actor=actor
    )


@transaction.atomic
def set_issue_em_status(
    *, issue: ScopingIssue, em_status: EMStatus | str | None, actor: AbstractBaseUser | None
) -> GitLabWrite | None:
    """Set (or clear) the issue's `EM_Status::` label."""
    return _queue_write(
        issue=issue, change=label_rules.change_for_em_status(issue.labels, em_status), actor=actor
    )


@transaction.atomic
def set_issue_engagement_manager(
    *, issue: ScopingIssue, engagement_manager: EngagementManager | None, actor: AbstractBaseUser | None
) -> GitLabWrite | None:
    """Assign the issue to an EM in GitLab (replacing any other EM assignee), or unassign."""
    if engagement_manager is not None and engagement_manager.gitlab_user_id is None:
        raise ValueError(f"{engagement_manager} has no linked GitLab user yet; an admin must link them first")
    if issue.engagement_manager_id == (engagement_manager.pk if engagement_manager else None):
        return None
    issue.engagement_manager = engagement_manager
    issue.assignee_usernames = [engagement_manager.gitlab_username] if engagement_manager else []
    assignee_ids = [engagement_manager.gitlab_user_id] if engagement_manager else []
    return _queue_write(issue=issue, change=LabelChange(), actor=actor, assignee_ids=assignee_ids)


@transaction.atomic
def set_keep_open(
    *, issue: ScopingIssue, until: date | None, actor: AbstractBaseUser | None, reason: str = ""
) -> KeepOpenOverride:
    """Keep an inactive issue out of the stale rule until a date (None clears it); audited."""
    if until is not None and until < timezone.localdate():
        raise ValueError("keep_open_until must be today or later")
    issue.keep_open_until = until
    issue.keep_open_set_by = actor
    issue.keep_open_set_at = timezone.now()
    issue.save(update_fields=["keep_open_until", "keep_open_set_by", "keep_open_set_at"])
    return KeepOpenOverride.objects.create(issue=issue, until=until, set_by=actor, reason=reason)


# --- Closing rules: each firing recorded once, its change queued like an EM's ---------------------


@transaction.atomic
def close_issue_by_rule(
    *,
    issue: ScopingIssue,
    rule: RuleAction.Rule | str,
    reason: str,
    change: LabelChange,
    close: bool,
    note: str = "",
    close_qtr: str = "",
) -> RuleAction | None:
    """Record a rule firing once per (issue, rule, reason) and queue its labels, close and comment.

    Returns None when the rule already fired for this reason (an EM's later edits stand), unless
    GitLab refused that firing's write. An empty change and no close only records the firing.
    """
    stamp = timezone.now()
    action, created = RuleAction.objects.get_or_create(
        issue=issue, rule=rule, reason=reason, defaults={"close_qtr": close_qtr, "applied_at": stamp}
    )
    if not created:
        if not rule_write_refused(action=action):
            return None
        action.applied_at, action.close_qtr = stamp, close_qtr
        action.save(update_fields=["applied_at", "close_qtr"])
    if not change and not close and not note:
        return action  # already as the rule wants it: recorded, nothing to send
    extra = {"note": note} if note else {}
    # One timestamp on both rows pairs the firing with its write (see rule_write_refused).
    _queue_write(
        issue=issue,
        change=change,
        actor=None,
        state_event="close" if close else "",
        created_at=stamp,
        **extra,
    )
    return action


def rule_write_refused(*, action: RuleAction) -> bool:
    """Whether GitLab refused the write this firing queued (e.g. its close_qtr label is missing)."""
    return GitLabWrite.objects.filter(
        issue_id=action.issue_id, created_at=action.applied_at, created_by=None, status=WriteStatus.FAILED
    ).exists()
