"""Opportunity API input, and the write-back state both tables show (the items are opportunities.tables)."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager
from psplan import queue
from psplan.api import StrictCharField
from psplan.columns import iso
from psplan.queue import WriteStatus


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


def write_back_status(state: dict[str, Any] | None) -> str:
    """A write-back in a CSV cell: its status, and why when it failed."""
    if state is None:
        return ""
    return f"{state['status']}: {state['error']}" if state["error"] else state["status"]


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
