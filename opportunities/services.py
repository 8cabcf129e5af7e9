"""Writes to opportunities: the EM's Professional Services fields, queued for Salesforce."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager, Opportunity, OpportunityChange, SalesforceWrite
from psplan import queue
from psplan.audit import ChangeSource

PS_FIELDS = ("engagement_manager", "em_confidence", "em_confidence_rationale", "scoping_issue_link")
_UNSET: Any = object()


def validate_ps_fields(*, em_confidence: str, em_confidence_rationale: str, scoping_issue_link: str) -> None:
    """Salesforce's picklist and the team's rule that Red and Amber need a reason; errors name the field."""
    errors: dict[str, str] = {}
    if em_confidence not in EMConfidence.values:
        errors["em_confidence"] = f"{em_confidence!r} is not one of {', '.join(EMConfidence.values)}."
    elif em_confidence in EMConfidence.needing_rationale() and not em_confidence_rationale.strip():
        errors["em_confidence_rationale"] = f"{em_confidence} confidence needs a rationale."
    if scoping_issue_link and not is_scoping_issue_url(scoping_issue_link):
        errors["scoping_issue_link"] = (
            f"Must be the URL of an issue in the GitLab project, like {settings.GITLAB_URL}/"
            f"{settings.GITLAB_PROJECT}/-/issues/123."
        )
    if errors:
        raise ValidationError(errors)


def is_scoping_issue_url(url: str) -> bool:
    """An issue (or work item) URL of the configured GitLab project; with a numeric project id, of any project there."""
    project = str(settings.GITLAB_PROJECT).strip("/")
    path = r"[^?#\s]+" if project.isdigit() else re.escape(project)
    pattern = rf"{re.escape(settings.GITLAB_URL)}/{path}/-/(?:issues|work_items)/[0-9]+/?"
    return re.fullmatch(pattern, url.strip(), flags=re.IGNORECASE) is not None


@transaction.atomic
def update_ps_fields(
    *,
    opportunity: Opportunity,
    actor: AbstractBaseUser | None,
    engagement_manager: EngagementManager | None = _UNSET,
    em_confidence: str = _UNSET,
    em_confidence_rationale: str = _UNSET,
    scoping_issue_link: str = _UNSET,
    source: ChangeSource | str = ChangeSource.PAGE,
) -> SalesforceWrite | None:
    """Change the PS section locally and queue the change for Salesforce; None when nothing changed."""
    requested = {
        "engagement_manager": engagement_manager,
        "em_confidence": em_confidence,
        "em_confidence_rationale": em_confidence_rationale,
        "scoping_issue_link": scoping_issue_link,
    }
    changed = {
        name: value
        for name, value in requested.items()
        if value is not _UNSET and getattr(opportunity, name) != value
    }
    final = {name: changed.get(name, getattr(opportunity, name)) for name in PS_FIELDS}
    validate_ps_fields(
        em_confidence=final["em_confidence"],
        em_confidence_rationale=final["em_confidence_rationale"],
        # A link Salesforce already has is left alone; one being set must point at a scoping issue.
        scoping_issue_link=changed.get("scoping_issue_link", ""),
    )
    if not changed:
        return None
    new_em = changed.get("engagement_manager")
    if new_em is not None and not new_em.salesforce_user_id:
        raise ValidationError({"engagement_manager": f"{new_em} has no Salesforce user id to write back."})
    write = SalesforceWrite.objects.create(
        opportunity=opportunity,
        changes={name: _wire_value(value) for name, value in changed.items()},
        base_modstamp=opportunity.system_modstamp,
        created_by=actor,
        source=source,
    )
    _record_history(opportunity, changed, write=write)
    for name, value in changed.items():
        setattr(opportunity, name, value)
    opportunity.save(update_fields=list(changed))
    queue.deliver_soon("salesforce")
    return write


def _wire_value(value: object) -> object:
    """What Salesforce stores: the EM lookup is the EM's Salesforce user id."""
    if isinstance(value, EngagementManager):
        return value.salesforce_user_id
    return value


# Field names as the history shows them, the same for edits made here and those read from Salesforce.
_HISTORY_NAMES = {
    "engagement_manager": "EngagementManager",
    "em_confidence": "EMConfidence",
    "em_confidence_rationale": "EMConfidenceRationale",
    "scoping_issue_link": "ScopingIssueLink",
}


def _record_history(opportunity: Opportunity, changed: dict[str, object], *, write: SalesforceWrite) -> None:
    OpportunityChange.objects.bulk_create(
        OpportunityChange(
            opportunity=opportunity,
            field=_HISTORY_NAMES[name],
            old_value=str(getattr(opportunity, name) or ""),
            new_value=str(value or ""),
            source=write.source,
            actor=write.created_by,
            write=write,
        )
        for name, value in changed.items()
    )
