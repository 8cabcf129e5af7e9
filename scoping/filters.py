"""One FilterSet per list, shared by the pages and the API."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.filters import (
    EngagementManagerFilter,
    QuarterFilter,
    StrictBooleanFilter,
    validate_quarter_code,
)
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import ScopingIssue

__all__ = ["ScopingIssueFilter", "WinRateFilter", "validate_quarter_code"]


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

    class Meta:
        model = ScopingIssue
        fields = ["stage", "segment", "engagement_manager", "em_status", "state", "close_qtr", "stale"]

    def filter_stale(self, queryset, name, value):
        now = timezone.now()
        return queryset.stale(as_of=now) if value else queryset.not_stale(as_of=now)

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

    class Meta:
        model = ScopingIssue
        fields = ["close_qtr", "engagement_manager", "segment"]
