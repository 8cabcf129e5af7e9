from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render

from opportunities.filters import OpportunityFilter
from opportunities.forms import PSFieldsForm
from opportunities.models import EngagementManager, Opportunity
from opportunities.selectors import with_latest_write
from opportunities.services import update_ps_fields
from opportunities.tables import OPPORTUNITIES, OPPORTUNITY_LIST
from psplan.permissions import editors_only

OPPORTUNITIES_PER_PAGE = 50
# The order of the page, its CSV download and its rows redrawn after an edit.
_LISTED = Opportunity.objects.order_by("close_date", "name")


def _opportunities():
    return with_latest_write(Opportunity.objects.select_related("account", "engagement_manager")).order_by(
        "close_date", "name"
    )


def opportunity_list(request):
    """Opportunities with their PS section; open ones by default, since those are the ones EMs update."""
    query = request.GET.copy()
    query.setdefault("is_closed", "false")
    if "csv" in request.GET:
        return _csv_download(query)
    filterset = OpportunityFilter(query, queryset=_LISTED)
    listed = filterset.qs if filterset.is_valid() else Opportunity.objects.none()
    page = Paginator(OPPORTUNITIES.rows(listed), OPPORTUNITIES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "filterset": filterset,
        "page": page,
        "table": OPPORTUNITY_LIST,
        "rows": OPPORTUNITY_LIST.rows(page),
        "query_without_page": urlencode([(k, v) for k, v in request.GET.items() if k != "page" and v]),
        "engagement_managers": EngagementManager.objects.active()
        .exclude(gitlab_username="")
        .order_by("name"),
    }
    return render(request, "opportunities/opportunity_list.html", context)


def _csv_download(query: QueryDict) -> HttpResponse:
    """The table with the page's filters, every row and column of the API's list, as CSV."""
    filterset = OpportunityFilter(query, queryset=_LISTED)
    return OPPORTUNITIES.csv_download(filterset, filename="opportunities")


def _row(request, salesforce_id: str, *, oob_messages: bool = False) -> HttpResponse:
    rows = OPPORTUNITY_LIST.rows(OPPORTUNITIES.rows(_LISTED.filter(salesforce_id=salesforce_id)))
    if not rows:
        raise Http404("No such opportunity")
    context = {"row": rows[0], "oob_messages": oob_messages}
    return render(request, "opportunities/_row.html", context)


def opportunity_row(request, salesforce_id: str):
    """One row of the table, e.g. after the editor is cancelled."""
    return _row(request, salesforce_id)


@editors_only
def edit_ps_fields(request, salesforce_id: str):
    """The inline editor (a table row, or the issue page's panel with ?layout=panel): GET shows the form,
    POST saves locally and queues the change for Salesforce."""
    opportunity = get_object_or_404(_opportunities(), salesforce_id=salesforce_id)
    form = PSFieldsForm(request.POST or None, initial=PSFieldsForm.initial_for(opportunity))
    panel = request.GET.get("layout") == "panel"
    if request.method == "POST" and form.is_valid():
        try:
            update_ps_fields(opportunity=opportunity, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(
                request, f"{opportunity.name} saved; Salesforce gets the change in the background."
            )
            return _saved(request, opportunity, panel=panel)
    status = 400 if request.method == "POST" else 200
    template = "opportunities/_ps_panel.html" if panel else "opportunities/_edit_row.html"
    context = {"opportunity": opportunity, "form": form, "oob_messages": request.method == "POST"}
    return render(request, template, context, status=status)


def _saved(request, opportunity: Opportunity, *, panel: bool):
    if not panel:
        return _row(request, opportunity.salesforce_id, oob_messages=True)
    opportunity = _opportunities().get(pk=opportunity.pk)
    form = PSFieldsForm(initial=PSFieldsForm.initial_for(opportunity))
    context = {"opportunity": opportunity, "form": form, "oob_messages": True}
    return render(request, "opportunities/_ps_panel.html", context)
