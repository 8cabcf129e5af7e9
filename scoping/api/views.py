from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from opportunities.filters import EngagementManagerListFilter
from opportunities.models import EngagementManager
from psplan.api import APIDefaults, field_errors
from psplan.audit import ChangeSource
from psplan.csv_export import CSVAnswers
from scoping import selectors, services
from scoping.api.serializers import ScopingIssueEditSerializer
from scoping.filters import ScopingIssueFilter
from scoping.models import ScopingIssue
from scoping.tables import ENGAGEMENT_MANAGERS, SCOPING_ISSUE_DETAIL, SCOPING_ISSUES


class ScopingIssueViewSet(CSVAnswers, APIDefaults, viewsets.GenericViewSet):
    """GitLab scoping issues as PS Plan reads their labels; PATCH writes the change back to GitLab."""

    csv_filename = "scoping-issues"

    queryset = ScopingIssue.objects.all()
    serializer_class = SCOPING_ISSUES.serializer
    filterset_class = ScopingIssueFilter
    lookup_field = "iid"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.issues()

    def list(self, request):
        now = timezone.now()
        page = self.paginate_rows(lambda chosen: SCOPING_ISSUES.rows(chosen, as_of=now))
        return self.get_paginated_response(SCOPING_ISSUES.items(page))

    @extend_schema(responses=SCOPING_ISSUE_DETAIL.serializer)
    def retrieve(self, request, iid: str):
        return Response(SCOPING_ISSUE_DETAIL.item(self._row(iid)))

    @extend_schema(request=ScopingIssueEditSerializer, responses=SCOPING_ISSUE_DETAIL.serializer)
    def partial_update(self, request, iid: str):
        """Change stage, segment, EM status, EM or keep-open date; label changes are queued for GitLab."""
        edit = ScopingIssueEditSerializer(data=request.data)
        with transaction.atomic():
            issue = self._locked(iid)
            edit.is_valid(raise_exception=True)
            _apply(issue, edit.validated_data, actor=request.user)
        # Read after commit: delivery is queued on commit and may already have run.
        return Response(SCOPING_ISSUE_DETAIL.item(self._row(iid)))

    def csv_table(self, data):
        if self.action == "list":
            return SCOPING_ISSUES.csv_table(data["results"])
        return SCOPING_ISSUE_DETAIL.csv_table([data])

    def _locked(self, iid: str) -> ScopingIssue:
        issue = ScopingIssue.objects.current().select_for_update().filter(iid=int(iid)).first()
        if issue is None:
            raise NotFound("No scoping issue has this iid.")
        return issue

    def _row(self, iid: str) -> dict[str, Any]:
        issue = self.get_queryset().filter(iid=int(iid))
        row = SCOPING_ISSUE_DETAIL.rows(issue, as_of=timezone.now()).first()
        if row is None:
            raise NotFound("No scoping issue has this iid.")
        return row


def _apply(issue: ScopingIssue, changes: dict[str, Any], *, actor) -> None:
    """Each field through its own service, in one transaction: a refused field undoes the others."""
    edit = {"issue": issue, "actor": actor, "source": ChangeSource.API}
    if "stage" in changes:
        services.set_issue_stage(stage=changes["stage"], **edit)
    if "segment" in changes:
        services.set_issue_segment(segment=changes["segment"], **edit)
    if "em_status" in changes:
        services.set_issue_em_status(em_status=changes["em_status"], **edit)
    if "engagement_manager" in changes:
        try:
            services.set_issue_engagement_manager(engagement_manager=changes["engagement_manager"], **edit)
        except ValueError as exc:
            raise field_errors("engagement_manager", exc) from None
    if "keep_open_until" in changes:
        try:
            services.set_keep_open(
                until=changes["keep_open_until"], reason=changes.get("keep_open_reason", ""), **edit
            )
        except ValueError as exc:
            raise field_errors("keep_open_until", exc) from None


class EngagementManagerViewSet(CSVAnswers, APIDefaults, viewsets.GenericViewSet):
    """Engagement managers with their territories and how many open scoping issues each has."""

    queryset = EngagementManager.objects.all()
    serializer_class = ENGAGEMENT_MANAGERS.serializer
    filterset_class = EngagementManagerListFilter

    def get_queryset(self):
        return selectors.engagement_managers()

    csv_filename = "engagement-managers"

    def list(self, request):
        page = self.paginate_rows(ENGAGEMENT_MANAGERS.rows)
        return self.get_paginated_response(ENGAGEMENT_MANAGERS.items(page))

    def csv_table(self, data):
        return ENGAGEMENT_MANAGERS.csv_table(data["results"])
