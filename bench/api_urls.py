"""The real URLconf plus `/bench/bare/<endpoint>/`: the same rows as the API's list query, as
`JsonResponse(list(queryset.values(...)[:50]))` with no framework, sign-in, count or paging."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.urls import path
from django.utils import timezone

from opportunities.selectors import opportunities
from opportunities.tables import OPPORTUNITIES
from psplan.urls import urlpatterns as app_urlpatterns
from scoping import selectors
from scoping.tables import ENGAGEMENT_MANAGERS, SCOPING_ISSUES

PAGE = 50
ROWS = {
    "scoping_issues": lambda: SCOPING_ISSUES.rows(selectors.issues(), as_of=timezone.now()),
    "opportunities": lambda: OPPORTUNITIES.rows(opportunities()),
    "engagement_managers": lambda: ENGAGEMENT_MANAGERS.rows(selectors.engagement_managers()),
}


@login_not_required
def bare(request, endpoint: str):
    if endpoint not in ROWS:
        raise Http404(endpoint)
    return JsonResponse(list(ROWS[endpoint]()[:PAGE]), safe=False)


urlpatterns = [path("bench/bare/<str:endpoint>/", bare), *app_urlpatterns]
