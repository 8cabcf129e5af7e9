"""One FilterSet per list, shared by the pages and the API."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from opportunities.choices import Segment
from psplan.fiscal import FiscalQuarter
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import ScopingIssue


def validate_quarter_code(value: str) -> None:
    try:
        FiscalQuarter.parse(value)
    except ValueError:
        raise ValidationError("Enter a fiscal quarter like Q323.", code="invalid") from None


class ScopingIssueFilter(django_filters.FilterSet):
    stage = django_filters.ChoiceFilter(choices=Stage.choices)
    segment = django_filters.ChoiceFilter(choices=Segment.choices)
    engagement_manager = django_filters.CharFilter(
        field_name="engagement_manager__gitlab_username", lookup_expr="iexact", label="Engagement manager"
    )
    em_status = django_filters.ChoiceFilter(choices=EMStatus.choices, label="EM status")
    state = django_filters.ChoiceFilter(choices=IssueState.choices)
    close_qtr = django_filters.CharFilter(
        method="filter_close_qtr", label="Close quarter", validators=[validate_quarter_code]
    )
    stale = django_filters.BooleanFilter(method="filter_stale")
    public_sector = django_filters.BooleanFilter()
    search = django_filters.CharFilter(method="filter_search", label="Search")

    class Meta:
        model = ScopingIssue
        fields = ["stage", "segment", "engagement_manager", "em_status", "state", "close_qtr", "stale"]

    def filter_close_qtr(self, queryset, name, value):
        return queryset.filter(close_qtr=FiscalQuarter.parse(value).code)

    def filter_stale(self, queryset, name, value):
        now = timezone.now()
        return queryset.stale(as_of=now) if value else queryset.not_stale(as_of=now)

    def filter_search(self, queryset, name, value):
        terms = Q(title__icontains=value) | Q(description__icontains=value)
        if value.lstrip("#").isdigit():
            terms |= Q(iid=int(value.lstrip("#")))
        return queryset.filter(terms)
