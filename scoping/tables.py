"""Scoping issues and engagement managers as tables: each column declared once (psplan.columns) for the
query, the API and its schema, the CSV and the HTML table."""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any

from django.contrib.humanize.templatetags.humanize import naturaltime
from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import slugify
from rest_framework import serializers

from opportunities.api.serializers import WriteBackSerializer, write_back, write_back_status
from opportunities.choices import Segment
from opportunities.models import opportunity_url
from opportunities.tables import ENGAGEMENT_MANAGER_COLUMNS
from opportunities.templatetags.outside import outside_link
from opportunities.templatetags.write_state import write_badge
from psplan import queue
from psplan.columns import Column, Table, column, iso, or_none, text_cell
from scoping.choices import EMStatus, IssueState, Outcome, Stage
from scoping.models import GitLabWrite
from scoping.selectors import OPEN_ISSUE_COUNT, TERRITORIES

_OUTCOMES = {Stage.CLOSED_WON.value: Outcome.WON.value, Stage.CLOSED_LOST.value: Outcome.LOST.value}
_stage = itemgetter("stage")


def _with_staleness(queryset, *, as_of):
    return queryset.with_staleness(as_of=as_of)


def _issue_cell(item) -> SafeString:
    return format_html(
        '<a href="{}">#{}</a>', reverse("scoping:issue-detail", args=[item["iid"]]), item["iid"]
    )


def _title_cell(item) -> SafeString:
    """The title with what the row needs said beside it: Public Sector, an undelivered change, GitLab's page."""
    write = item["write_back"] or {}
    return format_html(
        "{}{} {} <small>{}</small>",
        item["title"],
        SafeString(' <span class="tag pubsec">Public Sector US</span>') if item["public_sector"] else "",
        write_badge(write.get("status"), write.get("error"), "GitLab"),
        outside_link(item["web_url"], "GitLab ↗"),
    )


def _stage_cell(item) -> SafeString:
    stage = item["stage"]
    return format_html('<span class="stage stage-{}">{}</span>', slugify(stage), Stage(stage).label)


def _em_status_cell(item) -> SafeString:
    status = item["em_status"]
    return text_cell(status and EMStatus(status).label)


def _opportunity_cell(item) -> SafeString:
    if item["opportunity"] is None:
        return text_cell(None)
    return outside_link(opportunity_url(item["opportunity"]), item["opportunity_name"] or item["opportunity"])


def _last_activity_cell(item) -> SafeString:
    """How long ago, the exact time on hover, and whether the quiet has made it stale or soon will."""
    when = item["last_activity_at"]
    if item["stale"]:
        warning = SafeString(' <span class="tag stale-tag">stale</span>')
    elif item["going_stale"]:
        warning = SafeString(' <span class="tag warn-tag">goes stale soon</span>')
    else:
        warning = ""
    return format_html(
        '<time datetime="{}" title="{}">{}</time>{}',
        when,
        when,
        naturaltime(datetime.fromisoformat(when)),
        warning,
    )


WRITE_BACK = Column(
    "write_back",
    "Write-back",
    WriteBackSerializer(
        allow_null=True, help_text="The latest change made in PS Plan on its way to GitLab; null when none"
    ),
    reads=queue.latest_write_state(GitLabWrite),
    value=write_back,
    csv=write_back_status,
)

SCOPING_ISSUES = Table(
    "ScopingIssue",
    (
        column("iid", "Issue", serializers.IntegerField(), cell=_issue_cell),
        column("title", "Title", serializers.CharField(), cell=_title_cell),
        column(
            "web_url", "GitLab URL", serializers.CharField(help_text="Empty when GitLab's was not http(s)")
        ),
        column("state", "State", serializers.ChoiceField(choices=IssueState.choices)),
        column(
            "stage",
            "Stage",
            serializers.ChoiceField(choices=Stage.choices, help_text="Board column"),
            cell=_stage_cell,
        ),
        Column(
            "outcome",
            "Outcome",
            serializers.ChoiceField(choices=Outcome.choices, allow_null=True),
            reads={"stage": "stage"},
            value=lambda row: _OUTCOMES.get(_stage(row)),
        ),
        column(
            "close_qtr",
            "Close quarter",
            serializers.CharField(allow_null=True, help_text="Fiscal quarter it closed in, e.g. Q323"),
            present=or_none,
        ),
        column(
            "segment",
            "Segment",
            serializers.ChoiceField(choices=Segment.choices, allow_null=True),
            present=or_none,
        ),
        column(
            "em_status",
            "EM status",
            serializers.ChoiceField(choices=EMStatus.choices, allow_null=True),
            present=or_none,
            cell=_em_status_cell,
        ),
        column("public_sector", "Public Sector US", serializers.BooleanField()),
        *ENGAGEMENT_MANAGER_COLUMNS,
        column(
            "opportunity",
            "Opportunity",
            serializers.CharField(allow_null=True, help_text="Salesforce id"),
            source=F("opportunity__salesforce_id"),
            cell=_opportunity_cell,
        ),
        column(
            "opportunity_name",
            "Opportunity name",
            serializers.CharField(allow_null=True),
            source=F("opportunity__name"),
        ),
        column("labels", "Labels", serializers.ListField(child=serializers.CharField(allow_blank=True))),
        column(
            "last_activity_at",
            "Last activity",
            serializers.DateTimeField(help_text="Latest human change; PS Plan's own writes never count"),
            present=iso,
            cell=_last_activity_cell,
        ),
        Column(
            "stale",
            "Stale",
            serializers.BooleanField(
                help_text="No activity for the configured months and no keep-open override"
            ),
            reads={"stale_now": "stale_now"},
            value=itemgetter("stale_now"),
        ),
        Column(
            "going_stale",
            "Going stale",
            serializers.BooleanField(help_text="Goes stale within the warning window"),
            reads={"going_stale_now": "going_stale_now"},
            value=itemgetter("going_stale_now"),
        ),
        column("keep_open_until", "Keep open until", serializers.DateField(allow_null=True), present=iso),
        column("created_at", "Created", serializers.DateTimeField(), present=iso),
        column("updated_at", "Updated", serializers.DateTimeField(), present=iso),
        column("closed_at", "Closed", serializers.DateTimeField(allow_null=True), present=iso),
        WRITE_BACK,
    ),
    prepare=_with_staleness,
)

# The issues page's table.
ISSUE_LIST = SCOPING_ISSUES.html(
    "iid",
    "title",
    "stage",
    "segment",
    "engagement_manager_name",
    "em_status",
    "close_qtr",
    "opportunity",
    "last_activity_at",
)

SCOPING_ISSUE_DETAIL = SCOPING_ISSUES.extended(
    "ScopingIssueDetail",
    (
        column("description", "Description", serializers.CharField(allow_blank=True)),
        column(
            "assignees",
            "Assignees",
            serializers.ListField(child=serializers.CharField(), help_text="GitLab usernames"),
            source=F("assignee_usernames"),
        ),
        column(
            "author",
            "Author",
            serializers.CharField(allow_blank=True, help_text="GitLab username"),
            source=F("author_username"),
        ),
    ),
)


class _TerritorySerializer(serializers.Serializer):
    name = serializers.CharField()
    segment = serializers.CharField()
    role = serializers.CharField()


def _territories(row: dict[str, Any]) -> list[dict[str, str]]:
    return sorted(row["territory_list"] or [], key=itemgetter("name"))


ENGAGEMENT_MANAGERS = Table(
    "EngagementManager",
    (
        column(
            "username",
            "GitLab username",
            serializers.CharField(allow_null=True, help_text="GitLab username; null until linked"),
            source=F("gitlab_username"),
            present=or_none,
        ),
        column("name", "Name", serializers.CharField()),
        column("email", "E-mail", serializers.CharField(allow_null=True), present=or_none),
        column("active", "Active", serializers.BooleanField()),
        Column(
            "territories",
            "Territories",
            _TerritorySerializer(many=True),
            reads={"territory_list": TERRITORIES},
            value=_territories,
            csv=lambda territories: [f"{t['name']} ({t['role']})" for t in territories],
        ),
        Column(
            "segments",
            "Segments",
            serializers.ListField(child=serializers.CharField(), help_text="Segments of its territories"),
            reads={"territory_list": TERRITORIES},
            value=lambda row: sorted({territory["segment"] for territory in row["territory_list"] or []}),
        ),
        column("open_issue_count", "Open issues", serializers.IntegerField(), source=OPEN_ISSUE_COUNT),
    ),
)
