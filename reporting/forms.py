from __future__ import annotations

from django import forms

from opportunities.filters import validate_quarter_code
from psplan.audit import ChangeSource
from psplan.fiscal import FiscalQuarter
from reporting.audit import AuditFilters

QUARTER_CHOICES = 12  # three fiscal years to pick from; older quarters still work typed into the URL


class QuarterForm(forms.Form):
    """The quarter a report is about (or ends with); a page's own default when none is given."""

    quarter = forms.CharField(required=False, strip=True, validators=[validate_quarter_code])

    def __init__(self, data, *, default: FiscalQuarter):
        super().__init__(data)
        self.default = default

    def clean_quarter(self) -> FiscalQuarter:
        code = self.cleaned_data["quarter"]
        return FiscalQuarter.parse(code) if code else self.default

    @property
    def chosen(self) -> FiscalQuarter:
        """The valid choice, else the default (the page shows the error beside it)."""
        return self.cleaned_data["quarter"] if self.is_valid() else self.default

    def choices(self) -> list[str]:
        """Recent quarters, newest first, with the chosen one among them."""
        current = FiscalQuarter.current()
        codes = [current.shifted(-offset).code for offset in range(QUARTER_CHOICES)]
        chosen = self.chosen.code
        return codes if chosen in codes else [chosen, *codes]


class AuditForm(forms.Form):
    """What the audit trail is narrowed to: an issue, an opportunity, a person, where the change came from."""

    issue = forms.IntegerField(label="Issue", required=False, min_value=1, max_value=2**31 - 1)
    opportunity = forms.CharField(label="Opportunity", required=False, max_length=255, strip=True)
    person = forms.CharField(label="Person", required=False, max_length=255, strip=True)
    source = forms.ChoiceField(
        label="From", required=False, choices=[("", "Anywhere"), *ChangeSource.choices]
    )

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            issue=data["issue"], opportunity=data["opportunity"], person=data["person"], source=data["source"]
        )
