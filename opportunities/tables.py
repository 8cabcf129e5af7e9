"""Opportunities as a table: each column declared once (psplan.columns) for the query, the API and its
schema, the CSV and the HTML table."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import F
from django.template.defaultfilters import truncatechars
from django.utils.html import format_html
from django.utils.safestring import SafeString
from rest_framework import serializers

from opportunities.api.serializers import WriteBackSerializer, write_back, write_back_status
from opportunities.choices import EMConfidence
from opportunities.models import SalesforceWrite, opportunity_url
from opportunities.selectors import ps_amount
from opportunities.templatetags.outside import outside_link
from opportunities.templatetags.write_state import salesforce_write_state
from psplan import queue
from psplan.columns import Column, Table, column, iso, money, or_none, text_cell

MONEY = {"max_digits": 16, "decimal_places": 2, "allow_null": True}


def _name_cell(item) -> SafeString:
    return format_html(
        '{}<br><small class="muted">{}</small>',
        outside_link(item["url"], item["name"]),
        item["account"] or "",
    )


def _close_cell(item) -> SafeString:
    return format_html(
        '<time class="nowrap" datetime="{}">{}</time><br><small class="muted">{}</small>',
        item["close_date"] or "",
        text_cell(item["close_date"]),
        item["close_quarter"] or "",
    )


def _amount_cell(item) -> SafeString:
    amount = item["ps_amount"]
    return text_cell(None if amount is None else intcomma(round(Decimal(amount))))


def _confidence_cell(item) -> SafeString:
    confidence = item["em_confidence"]
    return format_html('<span class="tag confidence-{}">{}</span>', confidence.lower(), confidence)


def _rationale_cell(item) -> SafeString:
    rationale = text_cell(truncatechars(item["em_confidence_rationale"], 120))
    if not item["scoping_issue_link"]:
        return rationale
    return format_html(
        "{}<br><small>{}</small>", rationale, outside_link(item["scoping_issue_link"], "Scoping issue ↗")
    )


def _write_back_cell(item) -> SafeString:
    state = item["write_back"] or {}
    return salesforce_write_state(state.get("status"), state.get("error"))


def _engagement_manager_cell(item) -> SafeString:
    return text_cell(item["engagement_manager_name"] or "Unassigned")


# The record's EM as the API names them (GitLab username) and as people read them (name).
ENGAGEMENT_MANAGER_COLUMNS = (
    column(
        "engagement_manager",
        "EM username",
        serializers.CharField(allow_null=True, help_text="GitLab username"),
        source=F("engagement_manager__gitlab_username"),
        present=or_none,
    ),
    column(
        "engagement_manager_name",
        "Engagement manager",
        serializers.CharField(allow_null=True),
        source=F("engagement_manager__name"),
        cell=_engagement_manager_cell,
    ),
)


OPPORTUNITIES = Table(
    "Opportunity",
    (
        column("salesforce_id", "Salesforce id", serializers.CharField()),
        Column(
            "url",
            "Salesforce URL",
            serializers.URLField(help_text="The opportunity in Salesforce"),
            reads={"salesforce_id": "salesforce_id"},
            value=lambda row: opportunity_url(row["salesforce_id"]),
        ),
        column("name", "Opportunity", serializers.CharField(), cell=_name_cell),
        column("account", "Account", serializers.CharField(allow_null=True), source=F("account__name")),
        column(
            "sales_territory",
            "Sales territory",
            serializers.CharField(allow_null=True),
            source=F("account__sales_territory"),
        ),
        column("stage_name", "Stage", serializers.CharField()),
        column("forecast_category", "Forecast category", serializers.CharField()),
        column("is_closed", "Closed", serializers.BooleanField()),
        column("is_won", "Won", serializers.BooleanField()),
        column(
            "close_date",
            "Close date",
            serializers.DateField(allow_null=True),
            present=iso,
            cell=_close_cell,
        ),
        column(
            "close_quarter",
            "Close quarter",
            serializers.CharField(allow_null=True, help_text="Fiscal quarter of the close date, e.g. Q325"),
            present=or_none,
        ),
        column("amount", "Amount", serializers.DecimalField(**MONEY), present=money),
        column("proserv_amount", "Proserv amount", serializers.DecimalField(**MONEY), present=money),
        column("ps_value", "PS value", serializers.DecimalField(**MONEY), present=money),
        column(
            "ps_amount",
            "PS amount",
            serializers.DecimalField(**MONEY, help_text="Proserv amount, else PS value, else Amount"),
            source=ps_amount(),
            present=money,
            cell=_amount_cell,
        ),
        *ENGAGEMENT_MANAGER_COLUMNS,
        column(
            "em_confidence",
            "EM confidence",
            serializers.ChoiceField(choices=EMConfidence.choices),
            cell=_confidence_cell,
        ),
        column(
            "em_confidence_rationale",
            "Rationale",
            serializers.CharField(allow_blank=True),
            cell=_rationale_cell,
        ),
        column(
            "scoping_issue_link",
            "Scoping issue link",
            serializers.CharField(allow_null=True),
            present=or_none,
        ),
        column(
            "system_modstamp", "Salesforce modified", serializers.DateTimeField(allow_null=True), present=iso
        ),
        Column(
            "write_back",
            "Write-back",
            WriteBackSerializer(
                allow_null=True,
                help_text="The latest change made in PS Plan on its way to Salesforce; null when none",
            ),
            reads=queue.latest_write_state(SalesforceWrite),
            value=write_back,
            csv=write_back_status,
            cell=_write_back_cell,
        ),
    ),
)

# The opportunities page's table.
OPPORTUNITY_LIST = OPPORTUNITIES.html(
    "name",
    "close_date",
    "stage_name",
    "ps_amount",
    "engagement_manager_name",
    "em_confidence",
    "em_confidence_rationale",
    "write_back",
)
