from __future__ import annotations

import re
from collections.abc import Iterable

from django import forms
from django.conf import settings

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager, Opportunity
from psplan.widgets import ChoiceList, PlainSelect, PlainTextarea, PlainTextInput


class EngagementManagerField(forms.ModelChoiceField):
    """Salesforce's Engagement Manager lookup: people by name, only those with a Salesforce user."""

    label_field = "name"  # PlainSelect reads the options' labels from this column alone

    def label_from_instance(self, obj: EngagementManager) -> str:
        return obj.name


def scoping_issue_url_pattern() -> re.Pattern[str]:
    """An issue of the configured GitLab project, in any of GitLab's URL forms."""
    project = re.escape(f"{settings.GITLAB_URL.rstrip('/')}/{str(settings.GITLAB_PROJECT).strip('/')}")
    return re.compile(rf"{project}/(?:-/)?(?:issues|work_items)/\d+/?")


class PSFieldsForm(forms.Form):
    """The EM's part of an opportunity; the rules (Red and Amber need a reason) live in the service."""

    engagement_manager = EngagementManagerField(
        queryset=EngagementManager.objects.active().exclude(salesforce_user_id="").order_by("name"),
        required=False,
        empty_label="Unassigned",
        label="Engagement manager",
        widget=PlainSelect,
    )
    em_confidence = forms.ChoiceField(widget=PlainSelect, choices=EMConfidence.choices, label="EM confidence")
    em_confidence_rationale = forms.CharField(
        widget=PlainTextarea(attrs={"rows": 2}), required=False, label="Rationale"
    )
    scoping_issue_link = forms.CharField(
        required=False, max_length=500, label="Scoping issue link", widget=PlainTextInput
    )

    def __init__(self, *args, engagement_managers: Iterable[EngagementManager] | None = None, **kwargs):
        """`engagement_managers`: for a form only shown, the EMs the queryset below would offer, when the page
        has read them already (scoping.selectors.People.in_salesforce)."""
        super().__init__(*args, **kwargs)
        current = self.initial.get("engagement_manager")
        if engagement_managers is not None and not self.is_bound:
            field = self.fields["engagement_manager"]
            field.choices = ChoiceList(
                [("", field.empty_label), *((em.pk, em.name) for em in engagement_managers)]
            )
        elif current:
            # The opportunity's EM stays selectable even without a Salesforce user, so saving loses nothing.
            field = self.fields["engagement_manager"]
            field.queryset = (field.queryset | EngagementManager.objects.filter(pk=current)).order_by("name")

    @classmethod
    def initial_for(cls, opportunity: Opportunity) -> dict[str, object]:
        return {
            "engagement_manager": opportunity.engagement_manager_id,
            "em_confidence": opportunity.em_confidence,
            "em_confidence_rationale": opportunity.em_confidence_rationale,
            "scoping_issue_link": opportunity.scoping_issue_link,
        }

    def clean_scoping_issue_link(self) -> str:
        link = self.cleaned_data["scoping_issue_link"].strip()
        if link and not scoping_issue_url_pattern().fullmatch(link):
            raise forms.ValidationError(
                f"Must be the URL of an issue in {settings.GITLAB_URL}/{settings.GITLAB_PROJECT}, "
                f"like {settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues/123."
            )
        return link
