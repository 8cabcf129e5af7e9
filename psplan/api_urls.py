"""`/api/v1/`: the REST API of CONTRACT.md."""

from __future__ import annotations

from django.urls import Resolver404, path, re_path, resolve
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from opportunities.api.views import OpportunityViewSet
from psplan.api import APIDefaults
from reporting.api.views import ForecastView, WinRateView
from scoping.api.views import EngagementManagerViewSet, ScopingIssueViewSet

router = SimpleRouter()
router.register("scoping-issues", ScopingIssueViewSet, basename="scoping-issue")
router.register("opportunities", OpportunityViewSet, basename="opportunity")
router.register("engagement-managers", EngagementManagerViewSet, basename="engagement-manager")


@extend_schema(exclude=True)
class NoSuchEndpoint(APIDefaults, APIView):
    """Any other path under /api/v1/: a JSON 404 after sign-in, never Django's HTML page."""

    def _not_found(self, request, *args, **kwargs):
        if not request.path.endswith("/") and _resolves(request.path + "/"):
            raise NotFound(f"No such API endpoint. API paths end with a slash: {request.path}/")
        raise NotFound("No such API endpoint.")

    get = post = put = patch = delete = _not_found


def _resolves(path: str) -> bool:
    try:
        return resolve(path).func.__name__ != NoSuchEndpoint.__name__
    except Resolver404:
        return False


urlpatterns = [
    *router.urls,
    path("reports/win-rate/", WinRateView.as_view(), name="report-win-rate"),
    path("reports/forecast/", ForecastView.as_view(), name="report-forecast"),
    # No `$`: Django then matches by prefix, so paths with newlines land here too.
    re_path(r"^", NoSuchEndpoint.as_view()),
]
