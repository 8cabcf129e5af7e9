from __future__ import annotations

from django import forms
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import EngagementManager
from psplan.widgets import PlainDateInput, PlainSelect, PlainTextInput
from scoping.choices import EMStatus, Stage
from scoping.selectors import assignable_engagement_managers

NONE_CHOICE = [("", "—")]


class EngagementManagerChoiceField(forms.ModelChoiceField):
    """EMs by name; the value is the GitLab username that the filters and the API use too."""

    widget = PlainSelect
    label_field = "name"  # PlainSelect reads the options' labels from this column alone

    def __init__(self, **kwargs):
        kwargs.setdefault("label", "Engagement manager")
        kwargs.setdefault(
            "error_messages", {"invalid_choice": "Choose an engagement manager who is linked to GitLab."}
        )
        super().__init__(queryset=assignable_engagement_managers(), to_field_name="gitlab_username", **kwargs)

    def label_from_instance(self, obj: EngagementManager) -> str:
        return obj.name


class StageForm(forms.Form):
    stage = forms.ChoiceField(widget=PlainSelect, choices=Stage.choices, label="Stage")


class EMStatusForm(forms.Form):
    em_status = forms.ChoiceField(
        widget=PlainSelect, choices=NONE_CHOICE + EMStatus.choices, required=False, label="EM status"
    )


class IssueFieldsForm(forms.Form):
    """The EM's fields of one issue on its page; only what changed is written."""

    stage = forms.ChoiceField(widget=PlainSelect, choices=Stage.choices, label="Stage")
    segment = forms.ChoiceField(
        widget=PlainSelect, choices=NONE_CHOICE + Segment.choices, required=False, label="Segment"
    )
    engagement_manager = EngagementManagerChoiceField(required=False, empty_label="Unassigned")
    em_status = forms.ChoiceField(
        widget=PlainSelect, choices=NONE_CHOICE + EMStatus.choices, required=False, label="EM status"
    )


class KeepOpenForm(forms.Form):
    keep_open_until = forms.DateField(
        label="Keep open until", widget=PlainDateInput(attrs={"type": "date"}), required=True
    )
    keep_open_reason = forms.CharField(
        label="Keep open reason", max_length=500, required=True, widget=PlainTextInput
    )

    def clean_keep_open_until(self):
        until = self.cleaned_data["keep_open_until"]
        if until < timezone.localdate():
            raise forms.ValidationError("Choose today or a later date.")
        return until


class TriageForm(forms.Form):
    segment = forms.ChoiceField(widget=PlainSelect, choices=Segment.choices, label="Segment")
    engagement_manager = EngagementManagerChoiceField()


class BulkTriageForm(forms.Form):
    iid = forms.TypedMultipleChoiceField(
        coerce=int, choices=(), error_messages={"required": "Select rows first."}
    )

    def __init__(self, *args, iids: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["iid"].choices = [(iid, iid) for iid in iids]


class UndoTriageForm(forms.Form):
    """What the issue had before it was triaged: empty means none."""

    segment = forms.ChoiceField(widget=PlainSelect, choices=NONE_CHOICE + Segment.choices, required=False)
    engagement_manager = EngagementManagerChoiceField(required=False)


class DigestForm(forms.Form):
    weekly = forms.BooleanField(required=False, label="E-mail me this page every Monday")
