"""What an EM sends to change a scoping issue (the items are scoping.tables)."""

from __future__ import annotations

from rest_framework import serializers

from opportunities.api.serializers import EngagementManagerField
from opportunities.choices import Segment
from psplan.api import StrictCharField, StrictDateField
from scoping.choices import EMStatus, Stage


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
