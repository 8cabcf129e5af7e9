from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from opportunities.filters import ForecastFilter
from opportunities.models import Opportunity
from psplan.api import APIDefaults
from reporting import selectors
from reporting.api.serializers import ForecastSerializer, WinRateQuerySerializer, WinRateSerializer
from scoping.filters import WinRateFilter
from scoping.models import ScopingIssue


class ReportView(APIDefaults, GenericAPIView):
    """A report answers one object, yet takes the same filters as the list it summarises."""

    filters_in_schema = True
    pagination_class = None


class WinRateView(ReportView):
    """Won / (won + lost) scoping issues, overall and per quarter, engagement manager or segment."""

    queryset = ScopingIssue.objects.current()
    filterset_class = WinRateFilter
    serializer_class = WinRateSerializer

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


class ForecastView(ReportView):
    """The open pipeline by close quarter and EM confidence: count and PS amount."""

    queryset = Opportunity.objects.all()
    filterset_class = ForecastFilter
    serializer_class = ForecastSerializer

    def get(self, request):
        report = selectors.forecast(opportunities=self.filter_queryset(self.get_queryset()))
        return Response(ForecastSerializer(report).data)
