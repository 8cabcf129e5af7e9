"""Reads of opportunities that the API and the reports share."""

from __future__ import annotations

from django.db.models import DecimalField, F, QuerySet
from django.db.models.functions import Coalesce

from opportunities.models import Opportunity, SalesforceWrite
from psplan import queue

OPPORTUNITY_COLUMNS = (
    "salesforce_id",
    "name",
    "stage_name",
    "forecast_category",
    "is_closed",
    "is_won",
    "close_date",
    "close_quarter",
    "amount",
    "proserv_amount",
    "ps_value",
    "em_confidence",
    "em_confidence_rationale",
    "scoping_issue_link",
    "system_modstamp",
)


def ps_amount() -> Coalesce:
    """CONTRACT.md: the PS amount is the first of Proserv amount, PS value and Amount that is set."""
    return Coalesce(
        "proserv_amount", "ps_value", "amount", output_field=DecimalField(max_digits=16, decimal_places=2)
    )


def opportunities() -> QuerySet[Opportunity]:
    """Stable order for paging: the Salesforce id is unique."""
    return Opportunity.objects.order_by("salesforce_id")


def opportunity_rows(queryset: QuerySet[Opportunity]) -> QuerySet:
    """Plain rows for the API in one query: account, EM as GitLab username, PS amount computed in SQL,
    the state of the newest write-back."""
    return queryset.values(
        *OPPORTUNITY_COLUMNS,
        account_name=F("account__name"),
        sales_territory=F("account__sales_territory"),
        em_username=F("engagement_manager__gitlab_username"),
        em_name=F("engagement_manager__name"),
        ps_amount=ps_amount(),
        **queue.latest_write_state(SalesforceWrite),
    )


def with_latest_write(queryset: QuerySet[Opportunity]) -> QuerySet[Opportunity]:
    """Annotate the state of each opportunity's newest Salesforce write, in the same query."""
    return queryset.annotate(**queue.latest_write_state(SalesforceWrite))
