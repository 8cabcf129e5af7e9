from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone

from opportunities.choices import SyncKind
from opportunities.models import EngagementManager, SyncRun
from scoping.filters import ScopingIssueFilter
from scoping.models import ScopingIssue

ISSUES_PER_PAGE = 50


def issue_list(request):
    """The scoping issues table; with htmx, only the table is sent back."""
    now = timezone.now()
    issues = (
        ScopingIssue.objects.current()
        .select_related("engagement_manager", "opportunity")
        .with_staleness(as_of=now)
    )
    filterset = ScopingIssueFilter(request.GET, queryset=issues)
    page = Paginator(filterset.qs if filterset.is_valid() else issues.none(), ISSUES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "filterset": filterset,
        "page": page,
        "engagement_managers": EngagementManager.objects.active().exclude(gitlab_username=""),
        "query_without_page": _query_without_page(request),
    }
    template = "scoping/_issue_table.html" if request.htmx else "scoping/issue_list.html"
    return render(request, template, context)


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def sync_status(request):
    """Recent background runs, their counts and errors, and how old the last success of each kind is."""
    runs = SyncRun.objects.all()[:50]
    last_success = SyncRun.objects.last_successes()
    return render(
        request,
        "scoping/sync_status.html",
        {
            "runs": runs,
            "last_success": [(kind.label, last_success.get(kind.value)) for kind in SyncKind],
            "now": timezone.now(),
        },
    )
