"""Scoping issue API shapes. Lists are read from `.values()` rows, so output is built by hand, not per field."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from rest_framework import serializers

from opportunities.api.serializers import EngagementManagerField, WriteBackSerializer, write_back
from opportunities.choices import Segment
from psplan.api import StrictCharField, StrictDateField, iso
from scoping.choices import EMStatus, IssueState, Outcome, Stage

_OUTCOMES = {Stage.CLOSED_WON.value: Outcome.WON.value, Stage.CLOSED_LOST.value: Outcome.LOST.value}


class ScopingIssueSerializer(serializers.Serializer):
    iid = serializers.IntegerField()
    title = serializers.CharField()
    web_url = serializers.URLField()
    state = serializers.ChoiceField(choices=IssueState.choices)
    stage = serializers.ChoiceField(choices=Stage.choices, help_text="Board column")
    outcome = serializers.ChoiceField(choices=Outcome.choices, allow_null=True)
    close_qtr = serializers.CharField(allow_null=True, help_text="Fiscal quarter it closed in, e.g. Q323")
    segment = serializers.ChoiceField(choices=Segment.choices, allow_null=True)
    em_status = serializers.ChoiceField(choices=EMStatus.choices, allow_null=True)
    public_sector = serializers.BooleanField()
    engagement_manager = serializers.CharField(allow_null=True, help_text="GitLab username")
    engagement_manager_name = serializers.CharField(allow_null=True)
    opportunity = serializers.CharField(allow_null=True, help_text="Salesforce id")
    labels = serializers.ListField(child=serializers.CharField(allow_blank=True))
    last_activity_at = serializers.DateTimeField(
        help_text="Latest human change; PS Plan's own writes never count"
    )
    stale = serializers.BooleanField(
        help_text="No activity for the configured months and no keep-open override"
    )
    going_stale = serializers.BooleanField(help_text="Goes stale within the warning window")
    keep_open_until = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    write_back = WriteBackSerializer(
        allow_null=True, help_text="The latest change made in PS Plan on its way to GitLab; null when none"
    )

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "iid": row["iid"],
            "title": row["title"],
            "web_url": row["web_url"],
            "state": row["state"],
            "stage": row["stage"],
            "outcome": _OUTCOMES.get(row["stage"]),
            "close_qtr": row["close_qtr"] or None,
            "segment": row["segment"] or None,
            "em_status": row["em_status"] or None,
            "public_sector": row["public_sector"],
            "engagement_manager": row["em_username"] or None,
            "engagement_manager_name": row["em_name"],
            "opportunity": row["opportunity_salesforce_id"],
            "labels": row["labels"],
            "last_activity_at": iso(row["last_activity_at"]),
            "stale": row["stale_now"],
            "going_stale": row["going_stale_now"],
            "keep_open_until": iso(row["keep_open_until"]),
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
            "closed_at": iso(row["closed_at"]),
            "write_back": write_back(row),
        }


class ScopingIssueDetailSerializer(ScopingIssueSerializer):
    description = serializers.CharField(allow_blank=True)
    assignees = serializers.ListField(child=serializers.CharField(), help_text="GitLab usernames")
    author = serializers.CharField(allow_blank=True, help_text="GitLab username")

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            **super().to_representation(row),
            "description": row["description"],
            "assignees": row["assignee_usernames"],
            "author": row["author_username"],
        }


class ScopingIssueEditSerializer(serializers.Serializer):
    """What an EM changes on an issue; every field optional, null clears."""

    stage = serializers.ChoiceField(choices=Stage.choices, required=False)
    segment = serializers.ChoiceField(choices=Segment.choices, required=False, allow_null=True)
    em_status = serializers.ChoiceField(choices=EMStatus.choices, required=False, allow_null=True)
    engagement_manager = EngagementManagerField(required=False, allow_null=True)
    keep_open_until = StrictDateField(
        required=False,
        allow_null=True,
        help_text="Keep out of the stale rule until this day (today or later)",
    )
    keep_open_reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Why, for the audit trail (with keep_open_until)",
    )


class EngagementManagerSerializer(serializers.Serializer):
    class TerritorySerializer(serializers.Serializer):
        name = serializers.CharField()
        segment = serializers.CharField()
        role = serializers.CharField()

    username = serializers.CharField(allow_null=True, help_text="GitLab username; null until linked")
    name = serializers.CharField()
    email = serializers.CharField(allow_null=True)
    active = serializers.BooleanField()
    territories = TerritorySerializer(many=True)
    segments = serializers.ListField(child=serializers.CharField(), help_text="Segments of its territories")
    open_issue_count = serializers.IntegerField()

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        territories = sorted(row["territory_list"] or [], key=itemgetter("name"))
        return {
            "username": row["gitlab_username"] or None,
            "name": row["name"],
            "email": row["email"] or None,
            "active": row["active"],
            "territories": territories,
            "segments": sorted({territory["segment"] for territory in territories}),
            "open_issue_count": row["open_issue_count"],
        }
