from __future__ import annotations

from django import forms

from opportunities.choices import Segment
from opportunities.models import EngagementManager
from scoping.choices import Stage


class StageForm(forms.Form):
    stage = forms.ChoiceField(choices=Stage.choices)


class TriageForm(forms.Form):
    segment = forms.ChoiceField(choices=Segment.choices)
    engagement_manager = forms.ModelChoiceField(
        queryset=EngagementManager.objects.active().exclude(gitlab_username=""),
        to_field_name="gitlab_username",
        error_messages={"invalid_choice": "Choose an engagement manager who is linked to GitLab."},
    )
