from __future__ import annotations

from django.db import models


class Stage(models.TextChoices):
    """Board columns. Values are the `proposal::` label words (scoping.labels formats them)."""

    OPEN = "Open", "Open"
    AWAITING_DISCOVERY = "Awaiting_Discovery", "Awaiting discovery"
    STRAWMAN_WIP = "Strawman_WIP", "Strawman WIP"
    ESTIMATE_FEEDBACK = "Estimate_Feedback", "Estimate feedback"
    ON_HOLD = "On_hold", "On hold"
    SOW_WIP = "SOW_WIP", "SOW WIP"
    READY_FOR_APPROVAL = "Ready For Approval", "Ready for approval"
    APPROVED = "Approved", "Approved"
    CLOSED_WON = "Closed_Won", "Closed won"
    CLOSED_LOST = "Closed_Lost", "Closed lost"
    CLOSED = "Closed", "Closed"

    @classmethod
    def outcomes(cls) -> frozenset[Stage]:
        return frozenset({cls.CLOSED_WON, cls.CLOSED_LOST})

    @classmethod
    def closing(cls) -> frozenset[Stage]:
        """Stages whose issue is closed on GitLab."""
        return frozenset({cls.CLOSED_WON, cls.CLOSED_LOST, cls.CLOSED})


class EMStatus(models.TextChoices):
    WAITING = "Waiting", "Waiting"
    TODO = "ToDo", "To do"


class IssueState(models.TextChoices):
    OPENED = "opened", "Open"
    CLOSED = "closed", "Closed"


class Outcome(models.TextChoices):
    WON = "won", "Won"
    LOST = "lost", "Lost"


class ProblemKind(models.TextChoices):
    """Data-quality problems users see and fix; never a crash."""

    TWO_WORKFLOW_LABELS = "two_workflow_labels", "More than one workflow label"
    UNKNOWN_WORKFLOW_LABEL = "unknown_workflow_label", "Unknown workflow label"
    UNKNOWN_SEGMENT = "unknown_segment", "Unknown segment"
    TWO_SEGMENTS = "two_segments", "More than one segment"
    MALFORMED_CLOSE_QTR = "malformed_close_qtr", "Malformed close_qtr label"
    TWO_CLOSE_QTRS = "two_close_qtrs", "More than one close_qtr label"
    UNKNOWN_EM_STATUS = "unknown_em_status", "Unknown EM_Status label"
    TWO_EM_STATUSES = "two_em_statuses", "More than one EM_Status label"
    MISSING_CLOSE_QTR = "missing_close_qtr", "Won or lost without close_qtr"
    OUTCOME_ON_OPEN_ISSUE = "outcome_on_open_issue", "Won or lost but still open"
    EM_MISMATCH = "em_mismatch", "Assignee and opportunity disagree on the EM"
    OPPORTUNITY_LINK_MISMATCH = "opportunity_link_mismatch", "Issue and opportunity link elsewhere"
    OPPORTUNITY_NOT_FOUND = "opportunity_not_found", "Linked opportunity not found"
    NO_SEGMENT = "no_segment", "Triaged without a segment"
    UNSAFE_URL = "unsafe_url", "Link that is not http(s)"
