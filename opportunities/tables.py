"""Opportunities as a table: each column declared once (psplan.columns) for the query, the API and its
schema, the CSV and the HTML table header."""

from __future__ import annotations

from django.db.models import F
from rest_framework import serializers

from opportunities.api.serializers import WriteBackSerializer, write_back, write_back_status
from opportunities.choices import EMConfidence
from opportunities.models import SalesforceWrite, salesforce_url_prefix
from opportunities.selectors import ps_amount
from psplan import queue
from psplan.columns import Column, Table, column, iso, money, or_none

MONEY = {"max_digits": 16, "decimal_places": 2, "allow_null": True}


def _salesforce_url(row) -> str:
    return f"{salesforce_url_prefix()}{row['salesforce_id']}/view"


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
            value=_salesforce_url,
        ),
        column("name", "Opportunity", serializers.CharField()),
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
        column("close_date", "Close date", serializers.DateField(allow_null=True), present=iso),
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
        ),
        *ENGAGEMENT_MANAGER_COLUMNS,
        column("em_confidence", "EM confidence", serializers.ChoiceField(choices=EMConfidence.choices)),
        column("em_confidence_rationale", "Rationale", serializers.CharField(allow_blank=True)),
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
        ),
    ),
)
