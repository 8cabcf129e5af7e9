"""Reads of opportunities that the API and the reports share."""

from __future__ import annotations

from django.db.models import DecimalField, QuerySet
from django.db.models.functions import Coalesce

from opportunities.models import Opportunity, SalesforceWrite
from psplan import queue


def ps_amount(through: str = "") -> Coalesce:
    """CONTRACT.md: the PS amount is the first of Proserv amount, PS value and Amount that is set; `through`
    is the path to the opportunity from another model (`opportunity__`)."""
    return Coalesce(
        f"{through}proserv_amount",
        f"{through}ps_value",
        f"{through}amount",
        output_field=DecimalField(max_digits=16, decimal_places=2),
    )


def opportunities() -> QuerySet[Opportunity]:
    """Stable order for paging: the Salesforce id is unique."""
    return Opportunity.objects.order_by("salesforce_id")


def with_latest_write(queryset: QuerySet[Opportunity]) -> QuerySet[Opportunity]:
    """Annotate the state of each opportunity's newest Salesforce write, in the same query."""
    return queryset.annotate(**queue.latest_write_state(SalesforceWrite))
