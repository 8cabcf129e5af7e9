"""Opportunity API shapes. Lists are read from `.values()` rows, so output is built by hand, not per field."""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager
from psplan import queue
from psplan.api import StrictCharField, iso
from psplan.queue import WriteStatus

MONEY = {"max_digits": 16, "decimal_places": 2, "allow_null": True}


def money(value: Decimal | None) -> str | None:
    """Decimals as exact strings, as DRF writes them; never in exponent form."""
    return None if value is None else f"{value:.2f}"


def salesforce_url_prefix() -> str:
    """`Opportunity.salesforce_url` up to the id, so a page of rows needs no model instances."""
    base = settings.SALESFORCE_INSTANCE_URL or "https://login.salesforce.com"
    return f"{base}/lightning/r/Opportunity/"


class WriteBackSerializer(serializers.Serializer):
    """Delivery state of the latest change made in PS Plan, on its way to the other system."""

    status = serializers.ChoiceField(choices=WriteStatus.choices)
    error = serializers.CharField(
        allow_null=True,
        help_text="Why the last delivery attempt failed, or why it failed for good; null when fine",
    )
    since = serializers.DateTimeField(help_text="When it reached this status (pending: when it was made)")


def write_back(row: dict[str, Any]) -> dict[str, Any] | None:
    state = queue.write_back(row)
    return None if state is None else {**state, "since": iso(state["since"])}


@extend_schema_field(
    {"type": "string", "nullable": True, "description": "The engagement manager's GitLab username"}
)
class EngagementManagerField(serializers.Field):
    """An EM named by GitLab username (any letter case); null unassigns."""

    default_error_messages = {
        "invalid": "Give the engagement manager's GitLab username as a string.",
        "unknown": "No engagement manager has the GitLab username {username!r}.",
    }

    def to_internal_value(self, data: Any) -> EngagementManager:
        if not isinstance(data, str):
            self.fail("invalid")
        manager = (
            EngagementManager.objects.filter(gitlab_username__iexact=data)
            .exclude(gitlab_username="")
            .order_by("pk")
            .first()
        )
        if manager is None:
            self.fail("unknown", username=data)
        return manager

    def to_representation(self, value: EngagementManager) -> str:
        return value.gitlab_username


class OpportunitySerializer(serializers.Serializer):
    salesforce_id = serializers.CharField()
    url = serializers.URLField(help_text="The opportunity in Salesforce")
    name = serializers.CharField()
    account = serializers.CharField(allow_null=True)
    sales_territory = serializers.CharField(allow_null=True)
    stage_name = serializers.CharField()
    forecast_category = serializers.CharField()
    is_closed = serializers.BooleanField()
    is_won = serializers.BooleanField()
    close_date = serializers.DateField(allow_null=True)
    close_quarter = serializers.CharField(
        allow_null=True, help_text="Fiscal quarter of the close date, e.g. Q325"
    )
    amount = serializers.DecimalField(**MONEY)
    proserv_amount = serializers.DecimalField(**MONEY)
    ps_value = serializers.DecimalField(**MONEY)
    ps_amount = serializers.DecimalField(**MONEY, help_text="Proserv amount, else PS value, else Amount")
    engagement_manager = serializers.CharField(allow_null=True, help_text="GitLab username")
    engagement_manager_name = serializers.CharField(allow_null=True)
    em_confidence = serializers.ChoiceField(choices=EMConfidence.choices)
    em_confidence_rationale = serializers.CharField(allow_blank=True)
    scoping_issue_link = serializers.CharField(allow_null=True)
    system_modstamp = serializers.DateTimeField(allow_null=True)
    write_back = WriteBackSerializer(
        allow_null=True,
        help_text="The latest change made in PS Plan on its way to Salesforce; null when none",
    )

    @cached_property
    def _url_prefix(self) -> str:
        return salesforce_url_prefix()

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "salesforce_id": row["salesforce_id"],
            "url": f"{self._url_prefix}{row['salesforce_id']}/view",
            "name": row["name"],
            "account": row["account_name"],
            "sales_territory": row["sales_territory"],
            "stage_name": row["stage_name"],
            "forecast_category": row["forecast_category"],
            "is_closed": row["is_closed"],
            "is_won": row["is_won"],
            "close_date": iso(row["close_date"]),
            "close_quarter": row["close_quarter"] or None,
            "amount": money(row["amount"]),
            "proserv_amount": money(row["proserv_amount"]),
            "ps_value": money(row["ps_value"]),
            "ps_amount": money(row["ps_amount"]),
            "engagement_manager": row["em_username"] or None,
            "engagement_manager_name": row["em_name"],
            "em_confidence": row["em_confidence"],
            "em_confidence_rationale": row["em_confidence_rationale"],
            "scoping_issue_link": row["scoping_issue_link"] or None,
            "system_modstamp": iso(row["system_modstamp"]),
            "write_back": write_back(row),
        }


# The schema states the URL form; opportunities.services.validate_ps_fields checks it is an issue of the project.
_LINK = RegexValidator(r"\A(https?://[\s\S]*)?\Z", message="Must be the URL of the GitLab scoping issue.")


class OpportunityEditSerializer(serializers.Serializer):
    """The Professional Services section an EM edits; every field optional."""

    engagement_manager = EngagementManagerField(required=False, allow_null=True)
    em_confidence = serializers.ChoiceField(choices=EMConfidence.choices, required=False)
    em_confidence_rationale = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="Required for Red and Amber"
    )
    scoping_issue_link = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=500,
        validators=[_LINK],
        help_text="URL of the GitLab scoping issue; empty clears it",
    )
