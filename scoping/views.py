from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from opportunities.choices import SyncKind
from opportunities.models import EngagementManager, SalesforceWrite, SyncRun
from psplan import queue
from psplan.permissions import editors_only, staff_only
from psplan.queue import WriteStatus
from scoping.choices import IssueState, Stage
from scoping.filters import ScopingIssueFilter
from scoping.forms import StageForm, TriageForm
from scoping.models import GitLabWrite, ScopingIssue, WebhookDelivery
from scoping.services import set_issue_engagement_manager, set_issue_segment, set_issue_stage
from scoping.sync import lock_holder
from scoping.triage import Suggestion, open_issue_counts, suggest

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


def issue_detail(request, iid: int):
    """Placeholder for the issue page that the EM-workspace branch builds."""
    issue = get_object_or_404(ScopingIssue.objects.current().select_related("engagement_manager"), iid=iid)
    return render(request, "scoping/issue_detail.html", {"issue": issue})


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# The sync page warns when a system's last successful sync is older than this.
SYNC_TOO_OLD = timedelta(minutes=30)


def sync_status(request):
    """Recent background runs, how old each last success is, and both write-back queues with their failures."""
    now = timezone.now()
    last_success = SyncRun.objects.last_successes()
    queues = [
        _queue_summary("GitLab", GitLabWrite.objects.select_related("issue")),
        _queue_summary("Salesforce", SalesforceWrite.objects.select_related("opportunity")),
    ]
    context = {
        "runs": SyncRun.objects.all()[:50],
        "last_success": [(kind.label, last_success.get(kind.value)) for kind in SyncKind],
        "stale_syncs": stale_syncs(last_success, now=now),
        "lock": lock_holder(),
        "queues": queues,
        "last_webhook": WebhookDelivery.objects.only("received_at").first(),
        "now": now,
    }
    return render(request, "scoping/sync_status.html", context)


def stale_syncs(last_success: dict, *, now) -> list[str]:
    """Configured systems whose last successful sync is missing or older than SYNC_TOO_OLD."""
    systems = [
        ("GitLab", settings.GITLAB_ENABLED, (SyncKind.GITLAB_FULL, SyncKind.GITLAB_INCREMENTAL)),
        (
            "Salesforce",
            settings.SALESFORCE_ENABLED,
            (SyncKind.SALESFORCE_FULL, SyncKind.SALESFORCE_INCREMENTAL),
        ),
    ]
    stale = []
    for name, enabled, kinds in systems:
        latest = max((last_success[kind] for kind in kinds if kind in last_success), default=None)
        if enabled and (latest is None or now - latest > SYNC_TOO_OLD):
            stale.append(name)
    return stale


def _queue_summary(system: str, writes) -> dict:
    counts = writes.aggregate(
        pending=Count("id", filter=Q(status=WriteStatus.PENDING)),
        failed=Count("id", filter=Q(status=WriteStatus.FAILED)),
    )
    troubled = writes.filter(
        Q(status=WriteStatus.FAILED) | Q(status=WriteStatus.PENDING, attempts__gt=0)
    ).order_by("-created_at", "-id")[:20]
    return {"system": system, **counts, "troubled": troubled}


@require_POST
@staff_only
def retry_writes(request):
    """Staff: send every waiting write now, and give failed ones another try."""
    retried = sum(queue.retry_now(model) for model in (GitLabWrite, SalesforceWrite))
    for system in queue.DELIVERY_TASKS:
        queue.deliver_soon(system)
    messages.success(request, f"{retried} write(s) queued for delivery now.")
    return redirect("scoping:sync-status")


BOARD_COLUMNS = list(Stage)
RECENTLY_CLOSED = timedelta(days=90)


def _board_engagement_manager(request) -> EngagementManager | None:
    """The EM whose board to show: ?engagement_manager=username, else the signed-in EM, else everyone."""
    username = request.GET.get("engagement_manager")
    if username == "all":
        return None
    if username:
        return get_object_or_404(EngagementManager, gitlab_username__iexact=username)
    return getattr(request.user, "engagement_manager", None)


def board(request):
    """An EM's scoping issues in workflow columns; issues closed in the last 90 days stay visible."""
    now = timezone.now()
    engagement_manager = _board_engagement_manager(request)
    issues = (
        ScopingIssue.objects.current()
        .filter(Q(state=IssueState.OPENED) | Q(closed_at__gte=now - RECENTLY_CLOSED))
        .select_related("engagement_manager")
        .with_staleness(as_of=now)
        .order_by("last_activity_at")
    )
    if engagement_manager:
        issues = issues.for_em(engagement_manager)
    by_stage: dict[str, list[ScopingIssue]] = {stage: [] for stage in BOARD_COLUMNS}
    for issue in issues:
        by_stage[issue.stage].append(issue)
    context = {
        "columns": [(stage, by_stage[stage]) for stage in BOARD_COLUMNS],
        "board_em": engagement_manager,
        "engagement_managers": EngagementManager.objects.active().exclude(gitlab_username=""),
        "stages": Stage,
    }
    return render(request, "scoping/_board.html" if request.htmx else "scoping/board.html", context)


@require_POST
@editors_only
def move_issue(request, iid: int):
    """Move a card to another column (GitLab board semantics); answers with the refreshed board."""
    issue = get_object_or_404(ScopingIssue.objects.current(), iid=iid)
    form = StageForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest(f"Unknown stage {request.POST.get('stage')!r}.")
    set_issue_stage(issue=issue, stage=form.cleaned_data["stage"], actor=request.user)
    return board(request)


def triage(request):
    """New and unassigned issues with the EM and segment their account's territory suggests."""
    issues = list(
        ScopingIssue.objects.untriaged()
        .select_related("engagement_manager", "opportunity__account__territory")
        .order_by("created_at")
    )
    suggestions = suggest(issues)
    rows = [(issue, suggestions[issue.pk], _triage_form(issue, suggestions[issue.pk])) for issue in issues]
    return render(request, "scoping/triage.html", {"rows": rows, "load": open_issue_counts()})


def _triage_form(issue: ScopingIssue, suggestion: Suggestion) -> TriageForm:
    em = issue.engagement_manager or suggestion.engagement_manager
    return TriageForm(
        initial={
            "segment": issue.segment or suggestion.segment,
            "engagement_manager": em.gitlab_username if em else None,
        }
    )


@require_POST
@editors_only
def triage_issue(request, iid: int):
    """Label the segment and assign the EM in one step; the row leaves the queue."""
    issue = get_object_or_404(ScopingIssue.objects.current(), iid=iid)
    form = TriageForm(request.POST)
    if not form.is_valid():
        suggestion = suggest([issue])[issue.pk]
        return render(
            request,
            "scoping/_triage_row.html",
            {"issue": issue, "suggestion": suggestion, "form": form},
            status=400,
        )
    with transaction.atomic():
        set_issue_segment(issue=issue, segment=form.cleaned_data["segment"], actor=request.user)
        set_issue_engagement_manager(
            issue=issue, engagement_manager=form.cleaned_data["engagement_manager"], actor=request.user
        )
    if request.htmx:
        return HttpResponse("")
    messages.success(request, f"#{issue.iid} triaged to {form.cleaned_data['engagement_manager']}.")
    return redirect("scoping:triage")
