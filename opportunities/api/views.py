from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from opportunities.api.serializers import (
    OpportunityDetailSerializer,
    OpportunityEditSerializer,
    OpportunitySerializer,
)
from opportunities.filters import OpportunityFilter
from opportunities.models import Opportunity
from opportunities.selectors import latest_write, opportunities, opportunity_rows, write_state
from opportunities.services import update_ps_fields
from psplan.api import APIDefaults

# Salesforce ids are 15 or 18 letters and digits; other paths reach psplan.api_urls' JSON 404.
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class OpportunityViewSet(APIDefaults, viewsets.GenericViewSet):
    """Mirrored Salesforce opportunities and their Professional Services section."""

    queryset = Opportunity.objects.all()
    serializer_class = OpportunitySerializer
    filterset_class = OpportunityFilter
    lookup_field = "salesforce_id"
    lookup_value_regex = _SALESFORCE_ID.pattern

    def get_queryset(self):
        return opportunities()

    def list(self, request):
        page = self.paginate_rows(opportunity_rows)
        return self.get_paginated_response(OpportunitySerializer(page, many=True).data)

    @extend_schema(responses=OpportunityDetailSerializer)
    def retrieve(self, request, salesforce_id: str):
        row = self._row(salesforce_id)
        return Response(_detail(row, latest_write(salesforce_id=salesforce_id)))

    @extend_schema(request=OpportunityEditSerializer, responses=OpportunityDetailSerializer)
    def partial_update(self, request, salesforce_id: str):
        """Change the PS fields here and queue the change for Salesforce."""
        edit = OpportunityEditSerializer(data=request.data)
        with transaction.atomic():
            opportunity = self._locked(salesforce_id)
            edit.is_valid(raise_exception=True)
            try:
                write = update_ps_fields(opportunity=opportunity, actor=request.user, **edit.validated_data)
            except DjangoValidationError as exc:
                raise ValidationError(_by_field(exc)) from None
        # Read after commit: delivery is queued on commit and may already have run.
        return Response(_detail(self._row(salesforce_id), write_state(write.pk) if write else None))

    def _locked(self, salesforce_id: str) -> Opportunity:
        opportunity = Opportunity.objects.select_for_update().filter(salesforce_id=salesforce_id).first()
        if opportunity is None:
            raise NotFound("No opportunity has this Salesforce id.")
        return opportunity

    def _row(self, salesforce_id: str) -> dict[str, Any]:
        row = opportunity_rows(Opportunity.objects.filter(salesforce_id=salesforce_id)).first()
        if row is None:
            raise NotFound("No opportunity has this Salesforce id.")
        return row


def _detail(row: dict[str, Any], write: dict[str, Any] | None) -> dict[str, Any]:
    return OpportunityDetailSerializer({**row, "write_back": write}).data


def _by_field(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"non_field_errors": exc.messages}
