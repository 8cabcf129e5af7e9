from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from opportunities.choices import SyncKind
from opportunities.forms import PSFieldsForm
from opportunities.models import EngagementManager, SalesforceWrite, SyncRun
from psplan import queue
from psplan.permissions import editors_only, engagement_manager_of, staff_only
from psplan.queue import WriteStatus
from psplan.widgets import ChoiceList
from scoping.choices import EMStatus, Stage
from scoping.filters import ScopingIssueFilter
from scoping.forms import (
    BulkTriageForm,
    DigestForm,
    EMStatusForm,
    IssueFieldsForm,
    KeepOpenForm,
    StageForm,
    TriageForm,
    UndoTriageForm,
)
from scoping.history import issue_timeline
from scoping.models import DigestSubscription, GitLabWrite, ScopingIssue, WebhookDelivery
from scoping.selectors import (
    People,
    changed_since,
    opportunity_with_write,
    people,
    undelivered_changes,
    with_opportunity_write,
)
from scoping.services import (
    set_issue_em_status,
    set_issue_engagement_manager,
    set_issue_segment,
    set_issue_stage,
    set_keep_open,
)
from scoping.sync import lock_holder
from scoping.tables import ISSUE_LIST, SCOPING_ISSUES
from scoping.triage import TriageIssue, suggest, triage_issues
from scoping.workspace import FIRST_TOUCH, TriageRow, em_board, my_work, swimlanes, triage_page, triage_rows

ISSUES_PER_PAGE = 50


def _error(request, message: str, *, status: int = 400) -> HttpResponse:
    """An error fragment; the message is escaped by the template, whatever the caller echoed into it."""
    return render(request, "includes/_error.html", {"message": message}, status=status)


@require_GET
def home(request):
    """EMs land on their work; everyone else on the issue table."""
    if engagement_manager_of(request.user):
        return redirect("scoping:my-work")
    return redirect("scoping:issue-list")


def issue_list(request):
    """The scoping issues table; with htmx, only the table is sent back; with ?csv, all its rows as CSV."""
    now = timezone.now()
    if "csv" in request.GET:
        return _issues_csv(request.GET, as_of=now)
    issues = ScopingIssue.objects.current()
    filterset = ScopingIssueFilter(request.GET, queryset=issues)
    listed = SCOPING_ISSUES.rows(filterset.qs if filterset.is_valid() else issues.none(), as_of=now)
    page = Paginator(listed, ISSUES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "filterset": filterset,
        "page": page,
        "table": ISSUE_LIST,
        "rows": ISSUE_LIST.rows(page),
        "engagement_managers": people(request.user).offered,
        "query_without_page": _query_without(request.GET, "page"),
        "live_since": now,
    }
    template = "scoping/_issue_table.html" if request.htmx else "scoping/issue_list.html"
    return render(request, template, context)


def _issues_csv(query: QueryDict, *, as_of: datetime) -> HttpResponse:
    """Every issue the page's filters keep, with the API's columns."""
    filterset = ScopingIssueFilter(query, queryset=ScopingIssue.objects.current())
    return SCOPING_ISSUES.csv_download(filterset, filename="scoping-issues", as_of=as_of)


def _query_without(query: QueryDict, *names: str) -> str:
    """The query string without `names` and without empty parameters."""
    kept = QueryDict(mutable=True)
    for name, values in query.lists():
        if name not in names:
            kept.setlist(name, [value for value in values if value])
    return kept.urlencode()


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


# --- Issue page ------------------------------------------------------------------------------------


def _issue(iid: int) -> ScopingIssue:
    """The issue with who set its override and its opportunity with its account, one query (the page takes
    the EMs from people())."""
    return get_object_or_404(_ISSUE_PAGE, iid=iid)


# Built once (each read filters a fresh copy), as the page reads it on every request. The opportunity's newest
# Salesforce write comes with it: a query of its own cost more than the two subqueries.
_ISSUE_PAGE = with_opportunity_write(
    ScopingIssue.objects.current().select_related("keep_open_set_by", "opportunity__account")
)


def _issue_context(request, issue: ScopingIssue, **forms) -> dict:
    # The EM <select>s list the EMs as the forms' own querysets would, from the EMs read with the signed-in
    # user: a query of their own each cost more than the rest of the page.
    everyone = people(request.user)
    everyone.attach_to(issue)
    opportunity = opportunity_with_write(issue)
    fields_form = forms.get("fields_form") or IssueFieldsForm(initial=_issue_initial(issue))
    fields_form.fields["engagement_manager"].choices = ChoiceList(
        [
            ("", fields_form.fields["engagement_manager"].empty_label),
            *((em.gitlab_username, em.name) for em in everyone.assignable),
        ]
    )
    ps_form = None
    if opportunity:
        ps_form = PSFieldsForm(
            initial=PSFieldsForm.initial_for(opportunity),
            engagement_managers=everyone.in_salesforce(keeping=opportunity.engagement_manager_id),
        )
    now = timezone.now()
    return {
        "issue": issue,
        "stale": issue.is_stale(as_of=now),
        "going_stale": issue.is_going_stale(as_of=now),
        "timeline": issue_timeline(issue),
        "undelivered": undelivered_changes(issue, opportunity),
        "fields_form": fields_form,
        "keep_open_form": forms.get("keep_open_form")
        or KeepOpenForm(initial={"keep_open_until": issue.keep_open_until}),
        "opportunity": opportunity,
        "ps_form": ps_form,
    }


def _issue_initial(issue: ScopingIssue) -> dict:
    em = issue.engagement_manager
    return {
        "stage": issue.stage,
        "segment": issue.segment,
        "engagement_manager": em.gitlab_username if em else "",
        "em_status": issue.em_status,
    }


def issue_detail(request, iid: int):
    """Everything about one scoping issue; EMs edit it here."""
    issue = _issue(iid)
    return render(request, "scoping/issue_detail.html", _issue_context(request, issue))


def _issue_answer(request, issue: ScopingIssue, *, status: int = 200, **forms) -> HttpResponse:
    if not request.htmx:
        return redirect("scoping:issue-detail", iid=issue.iid)
    context = {**_issue_context(request, _issue(issue.iid), **forms), "oob_messages": True}
    return render(request, "scoping/_issue_detail.html", context, status=status)


@require_POST
@editors_only
def edit_issue(request, iid: int):
    """Save the issue's stage, segment, EM and EM status: each change goes through its service."""
    issue = _issue(iid)
    form = IssueFieldsForm(request.POST)
    if not form.is_valid():
        return _issue_answer(request, issue, status=400, fields_form=form)
    data, before = form.cleaned_data, _issue_initial(issue)
    em = data["engagement_manager"]
    with transaction.atomic():
        if data["stage"] != before["stage"]:
            set_issue_stage(issue=issue, stage=data["stage"], actor=request.user)
        if data["segment"] != before["segment"]:
            set_issue_segment(issue=issue, segment=data["segment"] or None, actor=request.user)
        if (em.gitlab_username if em else "") != before["engagement_manager"]:
            set_issue_engagement_manager(issue=issue, engagement_manager=em, actor=request.user)
        if data["em_status"] != before["em_status"]:
            set_issue_em_status(issue=issue, em_status=data["em_status"] or None, actor=request.user)
    messages.success(request, f"#{issue.iid} saved; GitLab gets the change in the background.")
    return _issue_answer(request, issue)


@require_POST
@editors_only
def keep_open(request, iid: int):
    """Set the keep-open override with a date and a reason, or clear it."""
    issue = _issue(iid)
    if request.POST.get("action") == "clear":
        set_keep_open(issue=issue, until=None, actor=request.user, reason="Cleared on the issue page")
        messages.success(request, f"#{issue.iid} no longer has a keep-open override.")
        return _issue_answer(request, issue)
    form = KeepOpenForm(request.POST)
    if not form.is_valid():
        return _issue_answer(request, issue, status=400, keep_open_form=form)
    set_keep_open(
        issue=issue,
        until=form.cleaned_data["keep_open_until"],
        actor=request.user,
        reason=form.cleaned_data["keep_open_reason"],
    )
    messages.success(
        request, f"#{issue.iid} stays open until {form.cleaned_data['keep_open_until']:%Y-%m-%d}."
    )
    return _issue_answer(request, issue)


# --- Board -----------------------------------------------------------------------------------------


def _board_engagement_manager(request, everyone: People) -> EngagementManager | None:
    """The EM whose board to show: ?engagement_manager=username, else the signed-in EM, else everyone."""
    username = request.GET.get("engagement_manager")
    if username == "all":
        return None
    if username:
        return _engagement_manager_named(everyone, username)
    return engagement_manager_of(request.user)


def _engagement_manager_named(everyone: People, username: str) -> EngagementManager:
    """The EM with this GitLab username, in any case; 404 for nobody."""
    found = everyone.with_username(username)
    if found is None:
        raise Http404("No engagement manager has this GitLab username.")
    return found


def board(request, *, after_action: bool = False):
    """An EM's issues in workflow columns, or everyone's in swimlanes by EM; both bounded."""
    now = timezone.now()
    everyone = people(request.user)
    board_em = _board_engagement_manager(request, everyone)
    context = {
        "board_em": board_em,
        "engagement_managers": everyone.offered,
        "selected_em": board_em.gitlab_username if board_em else "all",
        "board_query": _query_without(request.GET),
        "stages": Stage,
        "now": now,
        "oob_messages": after_action,
        "live_since": timezone.now(),
        "columns": None,
        "lanes": None,
    }
    if board_em:
        context["columns"] = em_board(board_em, as_of=now)
    else:
        context["lane_page"], context["lanes"] = swimlanes(
            request.GET.get("page"), engagement_managers=everyone.by_id, as_of=now
        )
    return render(request, "scoping/_board.html" if request.htmx else "scoping/board.html", context)


@require_POST
@editors_only
def move_issue(request, iid: int):
    """Move a card to another column (GitLab board semantics); answers with the refreshed board."""
    issue = get_object_or_404(ScopingIssue.objects.current(), iid=iid)
    form = StageForm(request.POST)
    if not form.is_valid():
        return _error(request, f"Unknown stage {request.POST.get('stage')!r}.")
    set_issue_stage(issue=issue, stage=form.cleaned_data["stage"], actor=request.user)
    messages.success(request, f"#{issue.iid} moved to {Stage(form.cleaned_data['stage']).label}.")
    return board(request, after_action=True)


@require_POST
@editors_only
def set_em_status(request, iid: int):
    """Toggle a card's EM status (Waiting / To do); answers with the refreshed board."""
    issue = get_object_or_404(ScopingIssue.objects.current(), iid=iid)
    form = EMStatusForm(request.POST)
    if not form.is_valid():
        return _error(request, f"Unknown EM status {request.POST.get('em_status')!r}.")
    status = form.cleaned_data["em_status"] or None
    set_issue_em_status(issue=issue, em_status=status, actor=request.user)
    messages.success(request, f"#{issue.iid} EM status: {EMStatus(status).label if status else 'none'}.")
    return board(request, after_action=True)


# --- Triage ----------------------------------------------------------------------------------------


def _triage_rows(request, issues: list[TriageIssue], *, posted: TriageForm | None = None) -> list[TriageRow]:
    """Rows with their suggestion preselected; a refused form keeps what was posted and its errors."""
    return triage_rows(issues, people=people(request.user), as_of=timezone.now(), posted=posted)


def _triage_row(request, issue: ScopingIssue, *, posted: TriageForm | None = None) -> TriageRow:
    """One issue's row, as triage shows it now, whether it still waits or not."""
    return _triage_rows(request, triage_issues(ScopingIssue.objects.filter(pk=issue.pk)), posted=posted)[0]


def _triage_context(request, **extra) -> dict:
    page = triage_page(request.GET.get("page"))
    return {
        "page": page,
        "rows": _triage_rows(request, list(page.object_list)),
        "waiting": page.paginator.count,
        "live_since": timezone.now(),
        **extra,
    }


def triage(request):
    """New and unassigned issues, oldest first, each with a suggested EM and why."""
    template = "scoping/_triage_queue.html" if request.htmx else "scoping/triage.html"
    return render(request, template, _triage_context(request))


def _triage_one(issue: ScopingIssue, *, segment, engagement_manager, actor) -> dict:
    """Triage through the services; returns what the issue had before, for undo."""
    before = {
        "segment": issue.segment,
        "engagement_manager": issue.engagement_manager.gitlab_username if issue.engagement_manager else "",
    }
    with transaction.atomic():
        set_issue_segment(issue=issue, segment=segment, actor=actor)
        set_issue_engagement_manager(issue=issue, engagement_manager=engagement_manager, actor=actor)
    return {"issue": issue, "before": before, "engagement_manager": engagement_manager, "segment": segment}


def _triage_answer(request, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    context = {**context, "waiting": ScopingIssue.objects.untriaged().count(), "oob_messages": True}
    return render(request, template, context, status=status)


@require_POST
@editors_only
def triage_issue(request, iid: int):
    """Label the segment and assign the EM in one step; the row confirms, with undo."""
    issue = get_object_or_404(ScopingIssue.objects.current(), iid=iid)
    form = TriageForm(request.POST)
    if not form.is_valid():
        return render(
            request, "scoping/_triage_row.html", {"row": _triage_row(request, issue, posted=form)}, status=400
        )
    done = _triage_one(issue, **form.cleaned_data, actor=request.user)
    messages.success(request, f"#{issue.iid} triaged to {done['engagement_manager'].name}.")
    if not request.htmx:
        return redirect("scoping:triage")
    return _triage_answer(request, "scoping/_triage_done.html", {"done": done})


@require_POST
@editors_only
def accept_suggestions(request):
    """Bulk triage: each selected row takes its suggested segment and EM."""
    untriaged = list(
        ScopingIssue.objects.untriaged()
        .filter(iid__in=[v for v in request.POST.getlist("iid") if v.isascii() and v.isdigit()])
        .select_related("engagement_manager")
        .order_by("created_at", "pk")
    )
    form = BulkTriageForm(request.POST, iids=[issue.iid for issue in untriaged])
    if not form.is_valid():
        messages.error(request, "Select rows that are still waiting for triage.")
        return _triage_answer(request, "scoping/_triage_queue.html", _triage_context(request), status=400)
    # Read by id, not as still untriaged: every issue read above gets its suggestion.
    suggestions = suggest(
        triage_issues(
            ScopingIssue.objects.filter(pk__in=[issue.pk for issue in untriaged]).order_by("created_at", "pk")
        ),
        people(request.user),
    )
    done = [
        _triage_one(issue, segment=s.segment, engagement_manager=s.engagement_manager, actor=request.user)
        for issue in untriaged
        if (s := suggestions[issue.pk]).engagement_manager and s.segment
    ]
    skipped = len(untriaged) - len(done)
    messages.success(
        request,
        f"{len(done)} issue{'s' if len(done) != 1 else ''} triaged as suggested."
        + (f" {skipped} had no suggestion and wait for you." if skipped else ""),
    )
    if not request.htmx:
        return redirect("scoping:triage")
    return _triage_answer(request, "scoping/_triage_queue.html", _triage_context(request, done=done))


@require_POST
@editors_only
def undo_triage(request, iid: int):
    """Put back the segment and EM the issue had before it was triaged."""
    issue = get_object_or_404(ScopingIssue.objects.current().select_related("engagement_manager"), iid=iid)
    form = UndoTriageForm(request.POST)
    if not form.is_valid():
        return _error(request, "This triage can no longer be undone.")
    with transaction.atomic():
        set_issue_segment(issue=issue, segment=form.cleaned_data["segment"] or None, actor=request.user)
        set_issue_engagement_manager(
            issue=issue, engagement_manager=form.cleaned_data["engagement_manager"], actor=request.user
        )
    messages.success(request, f"Triage of #{issue.iid} undone.")
    if not request.htmx:
        return redirect("scoping:triage")
    return _triage_answer(
        request, "scoping/_triage_row.html", {"row": _triage_row(request, issue), "row_oob": True}
    )


# --- My work ---------------------------------------------------------------------------------------


def my_work_page(request):
    """An EM's landing page: what needs them today. Others pick whose work to see."""
    everyone = people(request.user, with_digest=True)
    username = request.GET.get("engagement_manager")
    if username:
        engagement_manager = _engagement_manager_named(everyone, username)
    else:
        engagement_manager = engagement_manager_of(request.user)
    now = timezone.now()
    context = {
        "engagement_manager": engagement_manager,
        "engagement_managers": everyone.offered,
        "work": my_work(engagement_manager, engagement_manager.user, as_of=now)
        if engagement_manager
        else None,
        "digest_form": DigestForm(initial={"weekly": everyone.viewer_gets_digest}),
        "own_page": engagement_manager is not None and engagement_manager.user_id == request.user.pk,
        "overdue_before": now - FIRST_TOUCH,
    }
    return render(request, "scoping/my_work.html", context)


@require_POST
def weekly_digest(request):
    """Opt in or out of the weekly e-mail of "My work"."""
    form = DigestForm(request.POST)
    form.is_valid()
    if form.cleaned_data.get("weekly"):
        DigestSubscription.objects.get_or_create(user=request.user)
        messages.success(request, "You will get \u201cMy work\u201d by e-mail every Monday.")
    else:
        DigestSubscription.objects.filter(user=request.user).delete()
        messages.success(request, "Weekly e-mail switched off.")
    return redirect("scoping:my-work")


# --- Live updates ----------------------------------------------------------------------------------


@require_GET
def changes(request):
    """204 while nothing changed since `since`; else a new `since`, and an event the lists refresh on."""
    now = timezone.now()
    since = _moment(request.GET.get("since", ""))
    if since is not None and not changed_since(since):
        return HttpResponse(status=204)
    response = render(request, "includes/_live.html", {"since": now, "oob": True})
    if since is not None:
        response["HX-Trigger"] = "psplan-changed"
    return response


def _moment(text: str) -> datetime | None:
    try:
        moment = parse_datetime(text)
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
