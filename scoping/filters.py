"""One FilterSet per list, shared by the pages and the API."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

from opportunities.choices import Segment
from opportunities.filters import (
    QUARTER_PATTERN,
    EngagementManagerFilter,
    QuarterFilter,
    StrictBooleanFilter,
    validate_quarter_code,
)
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import ScopingIssue

__all__ = ["ScopingIssueFilter", "WinRateFilter", "validate_quarter_code"]


class StageInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """Several stages, comma separated: `Closed_Won,Closed_Lost` is every decided issue."""


@extend_schema_field({"type": "string", "pattern": QUARTER_PATTERN, "example": "Q325"})
class QuarterInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    """Several fiscal quarters, comma separated (`Q126,Q226`), in either letter case."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validators", [validate_quarter_code])
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        return super().filter(qs, [code.upper() for code in value] if value else value)


class ScopingIssueFilter(django_filters.FilterSet):
    stage = django_filters.ChoiceFilter(choices=Stage.choices, empty_label="All")
    segment = django_filters.ChoiceFilter(choices=Segment.choices, empty_label="All")
    engagement_manager = EngagementManagerFilter()
    em_status = django_filters.ChoiceFilter(choices=EMStatus.choices, empty_label="All", label="EM status")
    state = django_filters.ChoiceFilter(choices=IssueState.choices, empty_label="All")
    close_qtr = QuarterFilter(label="Close quarter")
    stale = StrictBooleanFilter(method="filter_stale")
    public_sector = StrictBooleanFilter()
    search = django_filters.CharFilter(method="filter_search", label="Search")
    # What the reports drill down with: every figure opens the list of exactly the issues it counts.
    stage_in = StageInFilter(field_name="stage", choices=Stage.choices, label="Stages")
    close_qtr_in = QuarterInFilter(field_name="close_qtr", label="Close quarters")
    has_engagement_manager = StrictBooleanFilter(
        field_name="engagement_manager", lookup_expr="isnull", exclude=True, label="Has an engagement manager"
    )
    has_segment = StrictBooleanFilter(method="filter_has_segment", label="Has a segment")

    class Meta:
        model = ScopingIssue
        fields = ["stage", "segment", "engagement_manager", "em_status", "state", "close_qtr", "stale"]

    def filter_stale(self, queryset, name, value):
        now = timezone.now()
        return queryset.stale(as_of=now) if value else queryset.not_stale(as_of=now)

    def filter_has_segment(self, queryset, name, value):
        return queryset.exclude(segment="") if value else queryset.filter(segment="")

    def filter_search(self, queryset, name, value):
        terms = Q(title__icontains=value) | Q(description__icontains=value)
        if value.lstrip("#").isascii() and value.lstrip("#").isdigit():
            terms |= Q(iid=int(value.lstrip("#")))
        return queryset.filter(terms)


class WinRateFilter(ScopingIssueFilter):
    """The win-rate report narrows by quarter, EM and segment; the other issue filters do not apply."""

    stage = None
    em_status = None
    state = None
    stale = None
    public_sector = None
    search = None
    stage_in = None
    close_qtr_in = None
    has_engagement_manager = None
    has_segment = None

    class Meta:
        model = ScopingIssue
        fields = ["close_qtr", "engagement_manager", "segment"]
