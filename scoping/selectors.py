"""Reads that need both apps: scoping issues with their EM and opportunity, EMs with their open issues."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import (
    Aggregate,
    BooleanField,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.functions import Coalesce, JSONObject

from opportunities.models import EngagementManager, Opportunity, SalesforceWrite, SyncRun, TerritoryAssignment
from psplan import queue
from psplan.permissions import engagement_managers_group_of, remember_roles
from psplan.prepared import PreparedRows
from psplan.queue import WriteStatus
from scoping.models import DigestSubscription, GitLabWrite, IssueChange, ScopingIssue, WebhookDelivery


def issues() -> QuerySet[ScopingIssue]:
    """Issues still in GitLab, newest first."""
    return ScopingIssue.objects.current().order_by("-iid")


# Who the shared EM <select> offers, and whom PS Plan can assign in GitLab: each rule once, as a condition
# that both filters querysets and flags the rows of people().
_OFFERED = Q(active=True) & ~Q(gitlab_username="")
_ASSIGNABLE = _OFFERED & Q(gitlab_user_id__isnull=False)


def assignable_engagement_managers() -> QuerySet[EngagementManager]:
    """Only EMs PS Plan can assign in GitLab: active and linked to a GitLab user."""
    return EngagementManager.objects.filter(_ASSIGNABLE)


# What pages show of an EM and what a triage writes, in the model's field order (Model.from_db wants it);
# the other fields load on access.
_PERSON_FIELDS = tuple(
    field.attname
    for field in EngagementManager._meta.concrete_fields
    if field.attname
    in {"id", "name", "salesforce_user_id", "gitlab_username", "gitlab_user_id", "user_id", "active"}
)


@dataclass(frozen=True)
class People:
    """Every EM by name, and which of them the EM <select> offers and PS Plan can assign (see people())."""

    engagement_managers: tuple[EngagementManager, ...] = ()
    offered_ids: frozenset[int] = frozenset()
    assignable_ids: frozenset[int] = frozenset()
    viewer_gets_digest: bool | None = None  # read only when people() was asked to

    @property
    def offered(self) -> list[EngagementManager]:
        return [em for em in self.engagement_managers if em.pk in self.offered_ids]

    @property
    def assignable(self) -> list[EngagementManager]:
        return [em for em in self.engagement_managers if em.pk in self.assignable_ids]

    @cached_property
    def by_id(self) -> dict[int, EngagementManager]:
        return {em.pk: em for em in self.engagement_managers}

    def in_salesforce(self, *, keeping: int | None) -> list[EngagementManager]:
        """The EMs PSFieldsForm offers for an opportunity, as its queryset lists them: active ones with a
        Salesforce user, and the EM it has now (`keeping`) in any case, so that saving loses nothing."""
        return [
            em for em in self.engagement_managers if (em.active and em.salesforce_user_id) or em.pk == keeping
        ]

    def attach_to(self, issue: ScopingIssue) -> None:
        """Give the issue and its opportunity their EMs from these: cheaper than two more joins in the
        issue's query (every EM is here, so none is missing)."""
        _ISSUE_EM.set_cached_value(issue, self.by_id.get(issue.engagement_manager_id))
        if issue.opportunity is not None:
            _OPPORTUNITY_EM.set_cached_value(
                issue.opportunity, self.by_id.get(issue.opportunity.engagement_manager_id)
            )

    def with_username(self, username: str) -> EngagementManager | None:
        """The EM with this GitLab username, in any case (as `gitlab_username__iexact` finds them)."""
        wanted = username.casefold()
        return next((em for em in self.engagement_managers if em.gitlab_username.casefold() == wanted), None)


_ISSUE_EM = ScopingIssue._meta.get_field("engagement_manager")
_OPPORTUNITY_EM = Opportunity._meta.get_field("engagement_manager")


def _people_rows(viewer: int, *, with_digest: bool) -> QuerySet:
    """Every EM with the two rules and the viewer's role as flags, and whether the viewer gets the digest."""
    flags = {
        "is_offered": ExpressionWrapper(_OFFERED, output_field=BooleanField()),
        "is_assignable": ExpressionWrapper(_ASSIGNABLE, output_field=BooleanField()),
        "viewer_in_group": engagement_managers_group_of(viewer),
    }
    if with_digest:
        flags["viewer_gets_digest"] = Exists(DigestSubscription.objects.filter(user=viewer))
    return (
        EngagementManager.objects.order_by("name", "pk")
        .annotate(**flags)
        .values_list(*_PERSON_FIELDS, *flags)
    )


# Prepared (see psplan.prepared): every page reads them, and writing their SQL cost as much as running it.
_PEOPLE_ROWS = {
    with_digest: PreparedRows(partial(_people_rows, with_digest=with_digest), viewer=(1, 2))
    for with_digest in (False, True)
}


def people(viewer: AbstractBaseUser, *, with_digest: bool = False) -> People:
    """Every EM, the signed-in user's role and their own EM, in one query: each page needs all three, and
    each was a query of its own. The role and EM are remembered for can_edit and engagement_manager_of.
    `with_digest` also reads whether the viewer gets the weekly e-mail ("My work" shows it)."""
    rows = _PEOPLE_ROWS[with_digest](viewer=viewer.pk)
    fields = len(_PERSON_FIELDS)
    # Instances with the fields read (the rest deferred), so that services and templates take them as EMs.
    ems = [EngagementManager.from_db(DEFAULT_DB_ALIAS, _PERSON_FIELDS, row[:fields]) for row in rows]
    offered = frozenset(em.pk for em, row in zip(ems, rows, strict=True) if row[fields])
    assignable = frozenset(em.pk for em, row in zip(ems, rows, strict=True) if row[fields + 1])
    if rows:  # with no EM at all, nothing was read about the user either
        own = next((em for em in ems if em.user_id == viewer.pk), None)
        remember_roles(viewer, in_engagement_managers_group=rows[0][fields + 2], engagement_manager=own)
    gets_digest = None
    if with_digest:
        gets_digest = (
            rows[0][fields + 3] if rows else DigestSubscription.objects.filter(user=viewer.pk).exists()
        )
    return People(tuple(ems), offered, assignable, gets_digest)


def engagement_managers() -> QuerySet[EngagementManager]:
    return EngagementManager.objects.order_by("name", "pk")


class _JSONList(Aggregate):
    """The values of a group as one JSON array, on SQLite and PostgreSQL."""

    function = "JSON_GROUP_ARRAY"
    output_field = JSONField()

    def as_postgresql(self, compiler, connection, **extra_context):
        # jsonb: Django reads jsonb as text and decodes it itself; psycopg would decode plain json first.
        return super().as_sql(compiler, connection, function="JSONB_AGG", **extra_context)


# Built once: cloning querysets is most of the cost of this query, and these never change.
OPEN_ISSUE_COUNT = Coalesce(
    Subquery(
        ScopingIssue.objects.open()
        .filter(engagement_manager=OuterRef("pk"))
        .order_by()
        .values("engagement_manager")
        .annotate(count=Count("pk"))
        .values("count")
    ),
    0,
)
TERRITORIES = Subquery(
    TerritoryAssignment.objects.filter(engagement_manager=OuterRef("pk"))
    .order_by()
    .values("engagement_manager")
    .annotate(items=_JSONList(JSONObject(name="territory__name", segment="territory__segment", role="role")))
    .values("items"),
    output_field=JSONField(),
)


# --- Write-back state and stage timing, read by the pages (one place to re-point) ------------------


def with_write_state(queryset: QuerySet[ScopingIssue]) -> QuerySet[ScopingIssue]:
    """Annotate `write_state` and `write_error` of each issue's newest GitLab write, as the API's `write_back`
    reports it: the list's and the board's badges follow the latest change, and the issue page and "My work"
    list every change GitLab refused."""
    newest = queue.latest_write_state(GitLabWrite)
    return queryset.annotate(
        write_state=Coalesce(newest["write_status"], Value(""), output_field=CharField()),
        write_error=Coalesce(newest["write_error"], Value(""), output_field=TextField()),
    )


def with_opportunity_write(issues: QuerySet[ScopingIssue]) -> QuerySet[ScopingIssue]:
    """Annotate `opportunity_write_status` and `opportunity_write_error`: the state of the newest Salesforce
    write of each issue's opportunity, for opportunity_with_write()."""
    newest = SalesforceWrite.objects.filter(opportunity=OuterRef("opportunity_id")).order_by("-pk")
    return issues.annotate(
        opportunity_write_status=Subquery(newest.values("status")[:1]),
        opportunity_write_error=Subquery(newest.values("last_error")[:1]),
    )


def opportunity_with_write(issue: ScopingIssue) -> Opportunity | None:
    """The issue's opportunity (selected with it) carrying `write_status` and `write_error` of its newest
    Salesforce write, as opportunities.selectors.with_latest_write annotates them; the issue was read
    with_opportunity_write()."""
    opportunity = issue.opportunity
    if opportunity is not None:
        opportunity.write_status = issue.opportunity_write_status
        opportunity.write_error = issue.opportunity_write_error
    return opportunity


def undelivered_changes(issue: ScopingIssue, opportunity: Opportunity | None) -> dict[str, list]:
    """The issue's GitLab writes and its opportunity's Salesforce writes that are not delivered yet. The
    opportunity comes from opportunity_with_write: one never written to has nothing to look up."""
    written = opportunity is not None and opportunity.write_status is not None
    return {
        "gitlab": list(_UNDELIVERED_GITLAB.filter(issue=issue.pk)[:50]),
        "salesforce": list(_UNDELIVERED_SALESFORCE.filter(opportunity=opportunity.pk)[:50])
        if written
        else [],
    }


# Built once (each read filters a fresh copy), as the issue page reads them on every request.
_UNDELIVERED_GITLAB = GitLabWrite.objects.exclude(status=WriteStatus.DELIVERED).order_by("created_at", "id")
_UNDELIVERED_SALESFORCE = SalesforceWrite.objects.exclude(status=WriteStatus.DELIVERED).order_by(
    "created_at", "id"
)


def with_stage_entered_at(queryset: QuerySet[ScopingIssue]) -> QuerySet[ScopingIssue]:
    """Annotate `stage_entered_at`: the latest recorded change of the issue's stage, else when it was created."""
    latest_move = (
        IssueChange.objects.filter(issue=OuterRef("pk"), field="stage")
        .order_by("-changed_at", "-id")
        .values("changed_at")[:1]
    )
    return queryset.annotate(stage_entered_at=Coalesce(Subquery(latest_move), F("created_at")))


def changed_since(moment: datetime) -> bool:
    """Whether anything a page shows may have changed after `moment`: a sync run, a webhook, an edit,
    a delivery. Each check reads an indexed or small table and stops at the first hit."""
    checks = (
        SyncRun.objects.filter(finished_at__gt=moment),
        WebhookDelivery.objects.filter(received_at__gt=moment),
        ScopingIssue.objects.filter(last_activity_at__gt=moment),
        IssueChange.objects.filter(changed_at__gt=moment),
        GitLabWrite.objects.filter(
            Q(created_at__gt=moment) | Q(delivered_at__gt=moment) | Q(failed_at__gt=moment)
        ),
        SalesforceWrite.objects.filter(
            Q(created_at__gt=moment) | Q(delivered_at__gt=moment) | Q(failed_at__gt=moment)
        ),
    )
    return any(check.exists() for check in checks)
