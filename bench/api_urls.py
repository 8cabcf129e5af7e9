"""The real URLconf plus `/bench/bare/<endpoint>/`: the same rows as the API's list query, as
`JsonResponse(list(queryset.values(...)[:50]))` with no framework, sign-in, count or paging."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.urls import path
from django.utils import timezone

from opportunities.selectors import opportunities, opportunity_rows
from psplan.urls import urlpatterns as app_urlpatterns
from scoping import selectors

PAGE = 50
ROWS = {
    "scoping_issues": lambda: selectors.issue_rows(selectors.issues(), as_of=timezone.now()),
    "opportunities": lambda: opportunity_rows(opportunities()),
    "engagement_managers": lambda: selectors.engagement_manager_rows(selectors.engagement_managers()),
}


@login_not_required
def bare(request, endpoint: str):
    if endpoint not in ROWS:
        raise Http404(endpoint)
    return JsonResponse(list(ROWS[endpoint]()[:PAGE]), safe=False)


urlpatterns = [path("bench/bare/<str:endpoint>/", bare), *app_urlpatterns]
