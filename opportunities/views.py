from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from opportunities.filters import OpportunityFilter
from opportunities.forms import PSFieldsForm
from opportunities.models import EngagementManager, Opportunity
from opportunities.selectors import with_latest_write
from opportunities.services import update_ps_fields
from psplan.permissions import editors_only

OPPORTUNITIES_PER_PAGE = 50


def _opportunities():
    return with_latest_write(Opportunity.objects.select_related("account", "engagement_manager")).order_by(
        "close_date", "name"
    )


def opportunity_list(request):
    """Opportunities with their PS section; open ones by default, since those are the ones EMs update."""
    query = request.GET.copy()
    query.setdefault("is_closed", "false")
    filterset = OpportunityFilter(query, queryset=_opportunities())
    rows = filterset.qs if filterset.is_valid() else Opportunity.objects.none()
    context = {
        "filterset": filterset,
        "page": Paginator(rows, OPPORTUNITIES_PER_PAGE).get_page(request.GET.get("page")),
        "engagement_managers": EngagementManager.objects.active().exclude(gitlab_username=""),
    }
    return render(request, "opportunities/opportunity_list.html", context)


def opportunity_row(request, salesforce_id: str):
    """One row of the table, e.g. after the editor is cancelled."""
    opportunity = get_object_or_404(_opportunities(), salesforce_id=salesforce_id)
    return render(request, "opportunities/_row.html", {"opportunity": opportunity})


@editors_only
def edit_ps_fields(request, salesforce_id: str):
    """The inline editor of one row: GET shows the form, POST saves locally and queues it for Salesforce."""
    opportunity = get_object_or_404(_opportunities(), salesforce_id=salesforce_id)
    form = PSFieldsForm(request.POST or None, initial=_current(opportunity))
    if request.method == "POST" and form.is_valid():
        try:
            update_ps_fields(opportunity=opportunity, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            return render(
                request, "opportunities/_row.html", {"opportunity": _opportunities().get(pk=opportunity.pk)}
            )
    status = 400 if request.method == "POST" else 200
    return render(
        request, "opportunities/_edit_row.html", {"opportunity": opportunity, "form": form}, status=status
    )


def _current(opportunity: Opportunity) -> dict[str, str]:
    return {
        "em_confidence": opportunity.em_confidence,
        "em_confidence_rationale": opportunity.em_confidence_rationale,
    }
