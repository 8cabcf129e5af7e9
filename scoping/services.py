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
from psplan import queue
from psplan.audit import ChangeSource
from psplan.fiscal import quarter_code
from psplan.queue import WriteStatus
from scoping import labels as label_rules
from scoping.choices import EMStatus, IssueState, ProblemKind, Stage
from scoping.links import issue_iid_in, opportunity_ids_in, same_salesforce_id
from scoping.models import DataQualityProblem, GitLabWrite, IssueChange, RuleAction, ScopingIssue

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


def refresh_issues(
    *,
    issues: QuerySet[ScopingIssue] | None = None,
    quiet_ids: Iterable[int] = (),
    source: ChangeSource | str = ChangeSource.GITLAB,
) -> int:
    """Recompute labels-derived fields, EM, opportunity and problems for issues; returns rows changed.

    A changed EM goes into the issue's history as coming from `source`, except for issues the caller
    has just created (`quiet_ids`, GitLab ids).
    """
    issues = (issues if issues is not None else ScopingIssue.objects.all()).select_related(
        "engagement_manager", "opportunity"
    )
    ems_by_username = {
        em.gitlab_username.lower(): em for em in EngagementManager.objects.exclude(gitlab_username="")
    }
    rows = list(issues)
    opportunities = _opportunities_for(rows)
    quiet = set(quiet_ids)
    changed, problems, history = [], [], []
    for issue in rows:
        before = [getattr(issue, name) for name in DERIVED_FIELDS]
        for name, value in derived_label_fields(labels=issue.labels, state=issue.state).items():
            setattr(issue, name, value)
        problems += _label_problems(issue)
        problems += _link_opportunity(issue, opportunities)
        problems += _resolve_engagement_manager(issue, ems_by_username)
        if [getattr(issue, name) for name in DERIVED_FIELDS] != before:
            changed.append(issue)
            em_before = before[DERIVED_FIELDS.index("engagement_manager")]
            if issue.gitlab_id not in quiet and em_before != issue.engagement_manager:
                history.append(_em_change(issue, em_before, source))
    with transaction.atomic():
        ScopingIssue.objects.bulk_update(changed, DERIVED_FIELDS, batch_size=500)
        DataQualityProblem.objects.filter(issue__in=[issue.pk for issue in rows]).delete()
        DataQualityProblem.objects.bulk_create(problems, batch_size=500)
        IssueChange.objects.bulk_create(history, batch_size=500)
    return len(changed)


def _em_change(issue: ScopingIssue, before: EngagementManager | None, source: str) -> IssueChange:
    return IssueChange(
        issue=issue,
        field="engagement_manager",
        old_value=before.name if before else "",
        new_value=issue.engagement_manager.name if issue.engagement_manager else "",
        source=source,
    )


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
    problems = [
        DataQualityProblem(issue=issue, kind=p.kind, labels=list(p.labels), message=p.message) for p in found
    ]
    if not issue.web_url:
        problems.append(
            DataQualityProblem(
                issue=issue,
                kind=ProblemKind.UNSAFE_URL,
                message="GitLab gave this issue a web address that is not http(s); PS Plan does not link to it",
            )
        )
    return problems


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


# --- Edits: the local row, its history and a queued write change together -------------------------

# The fields a person sees change; their history is kept as IssueChange rows.
TRACKED_FIELDS = ("stage", "segment", "em_status", "close_qtr", "state", "engagement_manager")


def _tracked(issue: ScopingIssue) -> dict[str, str]:
    values = {
        name: str(getattr(issue, name) or "") for name in TRACKED_FIELDS if name != "engagement_manager"
    }
    values["engagement_manager"] = issue.engagement_manager.name if issue.engagement_manager else ""
    return values


def _queue_write(
    *,
    issue: ScopingIssue,
    intent: dict[str, object],
    actor: AbstractBaseUser | None,
    source: ChangeSource | str,
    note: str = "",
    rule_action: RuleAction | None = None,
    before: dict[str, str] | None = None,
    write_back: bool = True,
) -> GitLabWrite | None:
    """Apply the intent to the local row, record what changed and queue it; None when nothing would.

    `before` is the row's tracked values when the caller changed it already. A person's edit is
    activity, as it would be in GitLab; a rule's is not. Without `write_back` the change stays here
    (the demo, which has no GitLab).
    """
    before = before or _tracked(issue)
    change = label_rules.change_for_intent(issue.labels, intent)
    issue.labels = change.applied_to(issue.labels)
    wanted_state = intent.get("state")
    if wanted_state and wanted_state != issue.state:
        issue.state = str(wanted_state)
        issue.closed_at = timezone.now() if wanted_state == IssueState.CLOSED else None
    for name, value in derived_label_fields(labels=issue.labels, state=issue.state).items():
        setattr(issue, name, value)
    after = _tracked(issue)
    changed = {name: (before[name], after[name]) for name in TRACKED_FIELDS if before[name] != after[name]}
    if not changed and not note:
        return None
    if actor is not None:
        issue.last_activity_at = timezone.now()
    issue.save()
    write = None
    if write_back:
        write = GitLabWrite.objects.create(
            issue=issue, intent=intent, note=note, rule_action=rule_action, source=source, created_by=actor
        )
        queue.deliver_soon("gitlab")
    IssueChange.objects.bulk_create(
        IssueChange(
            issue=issue,
            field=name,
            old_value=old,
            new_value=new,
            source=source,
            actor=actor,
            write=write,
            note=note,
        )
        for name, (old, new) in changed.items()
    )
    return write


def stage_intent(issue: ScopingIssue, stage: Stage | str) -> dict[str, object]:
    """GitLab board semantics: swap the stage label; into Closed/Won/Lost closes, out of them reopens."""
    stage = Stage(stage)
    intent: dict[str, object] = {
        "stage": stage.value,
        "state": IssueState.CLOSED.value if stage in Stage.closing() else IssueState.OPENED.value,
    }
    if stage in Stage.outcomes() and not label_rules.parse_labels(issue.labels).close_qtr:
        intent["close_qtr"] = quarter_code(timezone.localdate())
    return intent


@transaction.atomic
def set_issue_stage(
    *,
    issue: ScopingIssue,
    stage: Stage | str,
    actor: AbstractBaseUser | None,
    source: ChangeSource | str = ChangeSource.PAGE,
) -> GitLabWrite | None:
    """Move an issue to a board column, as GitLab's board would."""
    return _queue_write(issue=issue, intent=stage_intent(issue, stage), actor=actor, source=source)


@transaction.atomic
def set_issue_segment(
    *,
    issue: ScopingIssue,
    segment: Segment | str | None,
    actor: AbstractBaseUser | None,
    source: ChangeSource | str = ChangeSource.PAGE,
) -> GitLabWrite | None:
    """Set (or clear) the issue's `Segment::` label."""
    intent = {"segment": Segment(segment).value if segment else None}
    return _queue_write(issue=issue, intent=intent, actor=actor, source=source)


@transaction.atomic
def set_issue_em_status(
    *,
    issue: ScopingIssue,
    em_status: EMStatus | str | None,
    actor: AbstractBaseUser | None,
    source: ChangeSource | str = ChangeSource.PAGE,
) -> GitLabWrite | None:
    """Set (or clear) the issue's `EM_Status::` label."""
    intent = {"em_status": EMStatus(em_status).value if em_status else None}
    return _queue_write(issue=issue, intent=intent, actor=actor, source=source)


@transaction.atomic
def set_issue_engagement_manager(
    *,
    issue: ScopingIssue,
    engagement_manager: EngagementManager | None,
    actor: AbstractBaseUser | None,
    source: ChangeSource | str = ChangeSource.PAGE,
) -> GitLabWrite | None:
    """Assign the issue to an EM in GitLab (replacing any other assignee), or unassign."""
    if engagement_manager is not None and engagement_manager.gitlab_user_id is None:
        raise ValueError(f"{engagement_manager} has no linked GitLab user yet; an admin must link them first")
    if issue.engagement_manager_id == (engagement_manager.pk if engagement_manager else None):
        return None
    before = _tracked(issue)
    issue.engagement_manager = engagement_manager
    issue.assignee_usernames = [engagement_manager.gitlab_username] if engagement_manager else []
    intent = {"assignee_ids": [engagement_manager.gitlab_user_id] if engagement_manager else []}
    return _queue_write(issue=issue, intent=intent, actor=actor, source=source, before=before)


@transaction.atomic
def set_keep_open(
    *,
    issue: ScopingIssue,
    until: date | None,
    actor: AbstractBaseUser | None,
    reason: str = "",
    source: ChangeSource | str = ChangeSource.PAGE,
) -> IssueChange | None:
    """Keep an inactive issue out of the stale rule until a date (None clears it), with the reason."""
    if until is not None and until < timezone.localdate():
        raise ValueError("keep_open_until must be today or later")
    if until == issue.keep_open_until and reason == issue.keep_open_reason:
        return None
    before = issue.keep_open_until
    issue.keep_open_until, issue.keep_open_reason = until, reason if until else ""
    issue.keep_open_set_by, issue.keep_open_set_at = actor, timezone.now()
    issue.save(update_fields=["keep_open_until", "keep_open_reason", "keep_open_set_by", "keep_open_set_at"])
    return IssueChange.objects.create(
        issue=issue,
        field="keep_open_until",
        old_value=before.isoformat() if before else "",
        new_value=until.isoformat() if until else "",
        source=source,
        actor=actor,
        note=reason,
    )


# --- Closing rules: each firing recorded once, its change queued like an EM's ---------------------


@transaction.atomic
def close_issue_by_rule(
    *,
    issue: ScopingIssue,
    rule: RuleAction.Rule | str,
    reason: str,
    intent: dict[str, object],
    note: str = "",
    close_qtr: str = "",
    write_back: bool = True,
) -> RuleAction | None:
    """Record a rule firing once per (issue, rule, reason) and queue its labels, close and comment.

    Returns None when the rule already fired for this reason (an EM's later edits stand), unless
    GitLab refused that firing's write. An intent that changes nothing only records the firing.
    """
    action, created = RuleAction.objects.get_or_create(
        issue=issue, rule=rule, reason=reason, defaults={"close_qtr": close_qtr}
    )
    if not created:
        if not rule_write_refused(action=action):
            return None
        action.applied_at, action.close_qtr = timezone.now(), close_qtr
        action.save(update_fields=["applied_at", "close_qtr"])
    _queue_write(
        issue=issue,
        intent=intent,
        actor=None,
        source=ChangeSource.RULE,
        note=note,
        rule_action=action,
        write_back=write_back,
    )
    return action


def rule_write_refused(*, action: RuleAction) -> bool:
    """Whether GitLab refused the write this firing queued (e.g. its close_qtr label is missing)."""
    return action.writes.filter(status=WriteStatus.FAILED).exists()
