from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from opportunities.filters import ForecastFilter
from opportunities.models import EngagementManager, Opportunity
from reporting import selectors
from scoping.filters import WinRateFilter
from scoping.models import DataQualityProblem, ScopingIssue

GROUPINGS = {"quarter": "Quarter", "engagement_manager": "Engagement manager", "segment": "Segment"}


def win_rate(request):
    """Won / (won + lost) by quarter, EM or segment, with the same filters as the API."""
    group_by = request.GET.get("group_by") if request.GET.get("group_by") in GROUPINGS else "quarter"
    filterset = WinRateFilter(request.GET, queryset=ScopingIssue.objects.current())
    report = (
        selectors.win_rate(
            issues=filterset.qs, group_by=group_by, quarter=filterset.form.cleaned_data.get("close_qtr") or ""
        )
        if filterset.is_valid()
        else None
    )
    context = {
        "filterset": filterset,
        "report": report,
        "group_by": group_by,
        "group_label": GROUPINGS[group_by],
        "groupings": GROUPINGS,
        "engagement_managers": EngagementManager.objects.active().exclude(gitlab_username=""),
    }
    return render(request, "reporting/win_rate.html", context)


def forecast(request):
    """The open pipeline by close quarter and EM confidence."""
    filterset = ForecastFilter(request.GET, queryset=Opportunity.objects.all())
    report = selectors.forecast(opportunities=filterset.qs) if filterset.is_valid() else None
    return render(request, "reporting/forecast.html", {"filterset": filterset, "report": report})


def data_quality(request):
    """Everything a person should fix: label problems, EM and link disagreements, unlinked EMs."""
    kind = request.GET.get("kind", "")
    problems = DataQualityProblem.objects.select_related("issue", "opportunity").order_by(
        "kind", "-issue__iid"
    )
    if kind:
        problems = problems.filter(kind=kind)
    page = Paginator(problems, 100).get_page(request.GET.get("page"))
    summary = selectors.problem_counts()
    context = {
        "summary": summary,
        "total": sum(row["count"] for row in summary),
        "kind": kind,
        "page": page,
        "unlinked_ems": EngagementManager.objects.active().unlinked(),
    }
    return render(request, "reporting/data_quality.html", context)
