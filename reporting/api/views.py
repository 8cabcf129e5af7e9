from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from opportunities.filters import ForecastFilter
from opportunities.models import Opportunity
from psplan.api import APIDefaults
from psplan.csv_export import Column, CSVAnswers
from reporting import selectors
from reporting.api.serializers import ForecastSerializer, WinRateQuerySerializer, WinRateSerializer
from scoping.filters import WinRateFilter
from scoping.models import ScopingIssue


class ReportView(CSVAnswers, APIDefaults, GenericAPIView):
    """A report answers one object, yet takes the same filters as the list it summarises."""

    filters_in_schema = True
    pagination_class = None


class WinRateView(ReportView):
    """Won / (won + lost) scoping issues, overall and per quarter, engagement manager or segment."""

    queryset = ScopingIssue.objects.current()
    filterset_class = WinRateFilter
    serializer_class = WinRateSerializer
    csv_filename = "win-rate"

    @extend_schema(parameters=[WinRateQuerySerializer])
    def get(self, request):
        query = WinRateQuerySerializer(data={"group_by": request.query_params.get("group_by") or "quarter"})
        query.is_valid(raise_exception=True)
        issues = self.filter_queryset(self.get_queryset())
        report = selectors.win_rate(
            issues=issues,
            group_by=query.validated_data["group_by"],
            # Valid by now: the filter above answers 400 for a malformed quarter.
            quarter=request.query_params.get("close_qtr", "").upper(),
        )
        return Response(WinRateSerializer(report).data)

    def csv_table(self, data: dict[str, Any]) -> tuple[list[Column], list[dict[str, Any]]]:
        """The groups, then the total over them."""
        group_by = self.request.query_params.get("group_by") or "quarter"
        columns = [Column("key", group_by), *(Column(name, name) for name in ("won", "lost", "win_rate"))]
        return columns, [*data["groups"], {**data, "key": "Total"}]


class ForecastView(ReportView):
    """The open pipeline by close quarter and EM confidence: count and PS amount."""

    queryset = Opportunity.objects.all()
    filterset_class = ForecastFilter
    serializer_class = ForecastSerializer
    csv_filename = "forecast"

    def get(self, request):
        report = selectors.forecast(opportunities=self.filter_queryset(self.get_queryset()))
        return Response(ForecastSerializer({**report, "currency": settings.PSPLAN_CURRENCY}).data)

    def csv_table(self, data: dict[str, Any]) -> tuple[list[Column], list[dict[str, Any]]]:
        """One row per close quarter and EM confidence, each with the currency of its amount."""
        names = ("close_quarter", "em_confidence", "count", "amount", "currency")
        return [Column(name, name) for name in names], [
            {**group, "currency": data["currency"]} for group in data["groups"]
        ]
