"""One FilterSet per list, shared by the pages and the API; the strict filter types every list uses."""

from __future__ import annotations

import re

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager, Opportunity

QUARTER_PATTERN = "^[Qq][1-4][0-9]{2}$"
_QUARTER = re.compile(r"[Qq][1-4][0-9]{2}")


class StrictBooleanField(forms.Field):
    """`true` or `false`; Django's NullBooleanField turns anything else into "no filter" silently."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


def validate_quarter_code(value: str) -> None:
    if not _QUARTER.fullmatch(value):
        raise ValidationError("Enter a fiscal quarter like Q323.", code="invalid")


@extend_schema_field({"type": "string", "pattern": QUARTER_PATTERN, "example": "Q325"})
class QuarterFilter(django_filters.CharFilter):
    """A fiscal quarter code such as `Q325`, in either letter case."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validators", [validate_quarter_code])
        kwargs.setdefault("strip", False)
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        return super().filter(qs, value.upper() if value else value)


def validate_engagement_manager_username(value: str) -> None:
    if (
        not EngagementManager.objects.filter(gitlab_username__iexact=value)
        .exclude(gitlab_username="")
        .exists()
    ):
        # django-filter %-formats messages, so the caller's text goes in params, never into the message.
        raise ValidationError(
            "No engagement manager has the GitLab username %(username)r.",
            code="invalid",
            params={"username": value},
        )


@extend_schema_field({"type": "string", "description": "The engagement manager's GitLab username"})
class EngagementManagerFilter(django_filters.CharFilter):
    """An EM named by GitLab username; an unknown name is an error, not an empty list."""

    def __init__(self, field_name: str = "engagement_manager", **kwargs):
        kwargs.setdefault("validators", [validate_engagement_manager_username])
        kwargs.setdefault("label", "Engagement manager")
        super().__init__(field_name=f"{field_name}__gitlab_username", lookup_expr="iexact", **kwargs)


class OpportunityFilter(django_filters.FilterSet):
    engagement_manager = EngagementManagerFilter()
    em_confidence = django_filters.ChoiceFilter(
        choices=EMConfidence.choices, empty_label="All", label="EM confidence"
    )
    close_quarter = QuarterFilter(label="Close quarter")
    is_closed = StrictBooleanFilter()
    is_won = StrictBooleanFilter()

    class Meta:
        model = Opportunity
        fields = ["engagement_manager", "em_confidence", "close_quarter", "is_closed", "is_won"]


class ForecastFilter(OpportunityFilter):
    """The forecast is the open pipeline, so whether it is closed or won is not a choice."""

    is_closed = None
    is_won = None

    class Meta:
        model = Opportunity
        fields = ["engagement_manager", "em_confidence", "close_quarter"]


class EngagementManagerListFilter(django_filters.FilterSet):
    active = StrictBooleanFilter()

    class Meta:
        model = EngagementManager
        fields = ["active"]
