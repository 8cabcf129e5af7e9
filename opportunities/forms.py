from __future__ import annotations

from django import forms

from opportunities.choices import EMConfidence


class PSFieldsForm(forms.Form):
    """The EM's part of an opportunity; the rules (Red and Amber need a reason) live in the service."""

    em_confidence = forms.ChoiceField(choices=EMConfidence.choices, label="EM confidence")
    em_confidence_rationale = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Rationale"
    )
