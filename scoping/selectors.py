"""Reads that need both apps: scoping issues with their EM and opportunity, EMs with their open issues."""

from __future__ import annotations

from datetime import datetime

from django.db.models import (
    Aggregate,
    Case,
    CharField,
    Count,
    Exists,
    F,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Coalesce, JSONObject

from opportunities.models import EngagementManager, Opportunity, SalesforceWrite, SyncRun, TerritoryAssignment
from psplan.queue import WriteStatus
from scoping.models import GitLabWrite, IssueChange, ScopingIssue, WebhookDelivery


def issues() -> QuerySet[ScopingIssue]:
    """Issues still in GitLab, newest first."""
    return ScopingIssue.objects.current().order_by("-iid")


def assignable_engagement_managers() -> QuerySet[EngagementManager]:
    """Only EMs PS Plan can assign in GitLab: active and linked to a GitLab user."""
    return EngagementManager.objects.active().exclude(gitlab_username="").filter(gitlab_user_id__isnull=False)


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
    """Annotate `write_state`: "failed" when a change to the issue was refused, "pending" while one waits;
    and `write_error`: GitLab's answer to the newest such write (empty while a pending one was never tried)."""
    undelivered = GitLabWrite.objects.filter(issue=OuterRef("pk"))
    failed = undelivered.filter(status=WriteStatus.FAILED)
    pending = undelivered.filter(status=WriteStatus.PENDING)
    return queryset.annotate(
        write_state=Case(
            When(Exists(failed), then=Value(WriteStatus.FAILED.value)),
            When(Exists(pending), then=Value(WriteStatus.PENDING.value)),
            default=Value(""),
            output_field=CharField(),
        )
    ).annotate(
        # Read only for the few issues with such a write: most rows never run these subqueries.
        write_error=Case(
            When(write_state=WriteStatus.FAILED.value, then=_newest_error(failed)),
            When(write_state=WriteStatus.PENDING.value, then=_newest_error(pending)),
            default=Value(""),
            output_field=TextField(),
        )
    )


def _newest_error(writes: QuerySet[GitLabWrite]) -> Coalesce:
    return Coalesce(Subquery(writes.order_by("-created_at", "-pk").values("last_error")[:1]), Value(""))


def with_opportunity_write(queryset: QuerySet[ScopingIssue]) -> QuerySet[ScopingIssue]:
    """Annotate the state of the newest Salesforce write of each issue's opportunity, so that a page showing
    the opportunity beside the issue reads both in one query (see opportunity_with_write)."""
    newest = SalesforceWrite.objects.filter(opportunity=OuterRef("opportunity_id")).order_by("-pk")
    return queryset.annotate(
        opportunity_write_status=Subquery(newest.values("status")[:1]),
        opportunity_write_error=Subquery(newest.values("last_error")[:1]),
    )


def opportunity_with_write(issue: ScopingIssue) -> Opportunity | None:
    """The issue's opportunity (selected with it) carrying `write_status` and `write_error`, as
    opportunities.selectors.with_latest_write annotates them, from with_opportunity_write's annotations."""
    opportunity = issue.opportunity
    if opportunity is not None:
        opportunity.write_status = issue.opportunity_write_status
        opportunity.write_error = issue.opportunity_write_error
    return opportunity


def undelivered_changes(issue: ScopingIssue) -> dict[str, list]:
    """The issue's GitLab writes and its opportunity's Salesforce writes that are not delivered yet."""
    gitlab = GitLabWrite.objects.filter(issue=issue).exclude(status=WriteStatus.DELIVERED)
    salesforce = SalesforceWrite.objects.filter(opportunity_id=issue.opportunity_id).exclude(
        status=WriteStatus.DELIVERED
    )
    return {
        "gitlab": list(gitlab.order_by("created_at", "id")[:50]),
        "salesforce": list(salesforce.order_by("created_at", "id")[:50]) if issue.opportunity_id else [],
    }


def failed_writes_for(*, engagement_manager: EngagementManager, user) -> dict[str, QuerySet]:
    """Write-backs GitLab or Salesforce refused, on the EM's issues and opportunities or made by them, with
    what "My work" and its e-mail show of each."""
    return {
        "gitlab": GitLabWrite.objects.filter(status=WriteStatus.FAILED)
        .filter(Q(issue__engagement_manager=engagement_manager) | Q(created_by=user))
        .select_related("issue")
        .only("last_error", "issue__iid", "issue__title")
        .order_by("-created_at", "-id"),
        "salesforce": SalesforceWrite.objects.filter(status=WriteStatus.FAILED)
        .filter(Q(opportunity__engagement_manager=engagement_manager) | Q(created_by=user))
        .select_related("opportunity")
        .only("last_error", "opportunity__salesforce_id", "opportunity__name")
        .order_by("-created_at", "-id"),
    }


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
