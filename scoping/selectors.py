"""Reads that need both apps: scoping issues with their EM and opportunity, EMs with their open issues."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Aggregate, Count, F, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, JSONObject

from opportunities.models import EngagementManager, TerritoryAssignment
from psplan import queue
from scoping.models import GitLabWrite, ScopingIssue

ISSUE_COLUMNS = (
    "iid",
    "title",
    "web_url",
    "state",
    "stage",
    "close_qtr",
    "segment",
    "em_status",
    "public_sector",
    "labels",
    "last_activity_at",
    "keep_open_until",
    "created_at",
    "updated_at",
    "closed_at",
)
ISSUE_DETAIL_COLUMNS = (*ISSUE_COLUMNS, "description", "assignee_usernames", "author_username")


def issues() -> QuerySet[ScopingIssue]:
    """Issues still in GitLab, newest first."""
    return ScopingIssue.objects.current().order_by("-iid")


def issue_rows(queryset: QuerySet[ScopingIssue], *, as_of: datetime, detail: bool = False) -> QuerySet:
    """Plain rows for the API in one query: stale flags, the EM as GitLab username, the opportunity as
    Salesforce id, the state of the newest write-back. Added last, so that counting the filtered issues
    does not drag them along."""
    return queryset.with_staleness(as_of=as_of).values(
        *(ISSUE_DETAIL_COLUMNS if detail else ISSUE_COLUMNS),
        "stale_now",
        "going_stale_now",
        em_username=F("engagement_manager__gitlab_username"),
        em_name=F("engagement_manager__name"),
        opportunity_salesforce_id=F("opportunity__salesforce_id"),
        **queue.latest_write_state(GitLabWrite),
    )


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
_OPEN_ISSUE_COUNT = Coalesce(
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
_TERRITORIES = Subquery(
    TerritoryAssignment.objects.filter(engagement_manager=OuterRef("pk"))
    .order_by()
    .values("engagement_manager")
    .annotate(items=_JSONList(JSONObject(name="territory__name", segment="territory__segment", role="role")))
    .values("items"),
    output_field=JSONField(),
)


def engagement_manager_rows(queryset: QuerySet[EngagementManager]) -> QuerySet:
    """One row per EM, its territories and its number of open scoping issues, all in one query."""
    return queryset.values(
        "pk",
        "gitlab_username",
        "name",
        "email",
        "active",
        open_issue_count=_OPEN_ISSUE_COUNT,
        territory_list=_TERRITORIES,
    )
