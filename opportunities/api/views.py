from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from opportunities.api.serializers import OpportunityEditSerializer
from opportunities.filters import OpportunityFilter
from opportunities.models import Opportunity
from opportunities.selectors import opportunities
from opportunities.services import update_ps_fields
from opportunities.tables import OPPORTUNITIES
from psplan.api import APIDefaults
from psplan.audit import ChangeSource
from psplan.csv_export import CSVAnswers

# Salesforce ids are 15 or 18 letters and digits; other paths reach psplan.api_urls' JSON 404.
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class OpportunityViewSet(CSVAnswers, APIDefaults, viewsets.GenericViewSet):
    """Mirrored Salesforce opportunities and their Professional Services section."""

    csv_filename = "opportunities"

    queryset = Opportunity.objects.all()
    serializer_class = OPPORTUNITIES.serializer
    filterset_class = OpportunityFilter
    lookup_field = "salesforce_id"
    lookup_value_regex = _SALESFORCE_ID.pattern

    def get_queryset(self):
        return opportunities()

    def list(self, request):
        page = self.paginate_rows(OPPORTUNITIES.rows)
        return self.get_paginated_response(OPPORTUNITIES.items(page))

    def retrieve(self, request, salesforce_id: str):
        return Response(OPPORTUNITIES.item(self._row(salesforce_id)))

    @extend_schema(request=OpportunityEditSerializer, responses=OPPORTUNITIES.serializer)
    def partial_update(self, request, salesforce_id: str):
        """Change the PS fields here and queue the change for Salesforce."""
        edit = OpportunityEditSerializer(data=request.data)
        with transaction.atomic():
            opportunity = self._locked(salesforce_id)
            edit.is_valid(raise_exception=True)
            try:
                update_ps_fields(
                    opportunity=opportunity,
                    actor=request.user,
                    source=ChangeSource.API,
                    **edit.validated_data,
                )
            except DjangoValidationError as exc:
                raise ValidationError(_by_field(exc)) from None
        # Read after commit: delivery is queued on commit and may already have run.
        return Response(OPPORTUNITIES.item(self._row(salesforce_id)))

    def csv_table(self, data):
        return OPPORTUNITIES.csv_table(data.get("results", [data]))

    def _locked(self, salesforce_id: str) -> Opportunity:
        opportunity = Opportunity.objects.select_for_update().filter(salesforce_id=salesforce_id).first()
        if opportunity is None:
            raise NotFound("No opportunity has this Salesforce id.")
        return opportunity

    def _row(self, salesforce_id: str) -> dict[str, Any]:
        row = OPPORTUNITIES.rows(Opportunity.objects.filter(salesforce_id=salesforce_id)).first()
        if row is None:
            raise NotFound("No opportunity has this Salesforce id.")
        return row


def _by_field(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"non_field_errors": exc.messages}
