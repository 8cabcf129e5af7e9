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
from scoping import selectors, services
from scoping.api.serializers import (
    EngagementManagerSerializer,
    ScopingIssueDetailSerializer,
    ScopingIssueEditSerializer,
    ScopingIssueSerializer,
)
from scoping.choices import WriteStatus
from scoping.filters import ScopingIssueFilter
from scoping.models import GitLabWrite, ScopingIssue


class ScopingIssueViewSet(APIDefaults, viewsets.GenericViewSet):
    """GitLab scoping issues as PS Plan reads their labels; PATCH writes the change back to GitLab."""

    queryset = ScopingIssue.objects.all()
    serializer_class = ScopingIssueSerializer
    filterset_class = ScopingIssueFilter
    lookup_field = "iid"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.issues()

    def list(self, request):
        now = timezone.now()
        page = self.paginate_rows(lambda chosen: selectors.issue_rows(chosen, as_of=now))
        return self.get_paginated_response(ScopingIssueSerializer(page, many=True).data)

    @extend_schema(responses=ScopingIssueDetailSerializer)
    def retrieve(self, request, iid: str):
        row = self._row(iid)
        return Response(_detail(row, _write_back(selectors.latest_write(issue_iid=row["iid"]))))

    @extend_schema(request=ScopingIssueEditSerializer, responses=ScopingIssueDetailSerializer)
    def partial_update(self, request, iid: str):
        """Change stage, segment, EM status, EM or keep-open date; label changes are queued for GitLab."""
        edit = ScopingIssueEditSerializer(data=request.data)
        with transaction.atomic():
            issue = self._locked(iid)
            edit.is_valid(raise_exception=True)
            writes = _apply(issue, edit.validated_data, actor=request.user)
        # Read after commit: delivery is queued on commit and may already have run.
        state = _write_back(*selectors.writes_state(w.pk for w in writes)) if writes else None
        return Response(_detail(self._row(iid), state))

    def _locked(self, iid: str) -> ScopingIssue:
        issue = ScopingIssue.objects.current().select_for_update().filter(iid=int(iid)).first()
        if issue is None:
            raise NotFound("No scoping issue has this iid.")
        return issue

    def _row(self, iid: str) -> dict[str, Any]:
        issue = self.get_queryset().filter(iid=int(iid))
        row = selectors.issue_rows(issue, as_of=timezone.now(), detail=True).first()
        if row is None:
            raise NotFound("No scoping issue has this iid.")
        return row


def _apply(issue: ScopingIssue, changes: dict[str, Any], *, actor) -> list[GitLabWrite]:
    """Each field through its own service, in one transaction: a refused field undoes the others."""
    writes = []
    if "stage" in changes:
        writes.append(services.set_issue_stage(issue=issue, stage=changes["stage"], actor=actor))
    if "segment" in changes:
        writes.append(services.set_issue_segment(issue=issue, segment=changes["segment"], actor=actor))
    if "em_status" in changes:
        writes.append(services.set_issue_em_status(issue=issue, em_status=changes["em_status"], actor=actor))
    if "engagement_manager" in changes:
        try:
            writes.append(
                services.set_issue_engagement_manager(
                    issue=issue, engagement_manager=changes["engagement_manager"], actor=actor
                )
            )
        except ValueError as exc:
            raise field_errors("engagement_manager", exc) from None
    if "keep_open_until" in changes:
        _keep_open(issue, changes, actor=actor)
    return [write for write in writes if write is not None]


def _keep_open(issue: ScopingIssue, changes: dict[str, Any], *, actor) -> None:
    if changes["keep_open_until"] == issue.keep_open_until:
        return
    try:
        services.set_keep_open(
            issue=issue,
            until=changes["keep_open_until"],
            actor=actor,
            reason=changes.get("keep_open_reason", ""),
        )
    except ValueError as exc:
        raise field_errors("keep_open_until", exc) from None


_SEVERITY = {WriteStatus.FAILED: 0, WriteStatus.PENDING: 1, WriteStatus.DELIVERED: 2}


def _write_back(*states: dict[str, Any] | None) -> dict[str, str] | None:
    """One state for the writes of one change: failed if any failed, pending until all are delivered."""
    known = [state for state in states if state is not None]
    if not known:
        return None
    worst = min(known, key=lambda state: _SEVERITY.get(state["status"], 1))
    return {"status": worst["status"], "error": worst["last_error"]}


def _detail(row: dict[str, Any], write_back: dict[str, str] | None) -> dict[str, Any]:
    return ScopingIssueDetailSerializer({**row, "write_back": write_back}).data


class EngagementManagerViewSet(APIDefaults, viewsets.GenericViewSet):
    """Engagement managers with their territories and how many open scoping issues each has."""

    queryset = EngagementManager.objects.all()
    serializer_class = EngagementManagerSerializer
    filterset_class = EngagementManagerListFilter

    def get_queryset(self):
        return selectors.engagement_managers()

    def list(self, request):
        page = self.paginate_rows(selectors.engagement_manager_rows)
        return self.get_paginated_response(EngagementManagerSerializer(page, many=True).data)
