"""Data-quality checks: each one a count, the records it finds, and where a person fixes them.

Problems that need the labels parsed (two workflow labels, unknown segments, link disagreements)
come from the `DataQualityProblem` rows every sync recomputes; the rest are read off the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Trim

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager, Opportunity
from opportunities.selectors import ps_amount
from reporting.selectors import confidence
from scoping.choices import ProblemKind, Stage
from scoping.models import DataQualityProblem, ScopingIssue

GREY_WARNING_DAYS = 30
LINK_PROBLEMS = (ProblemKind.OPPORTUNITY_LINK_MISMATCH, ProblemKind.OPPORTUNITY_NOT_FOUND)
NAMED_PROBLEMS = {
    "two_workflow_labels": (ProblemKind.TWO_WORKFLOW_LABELS,),
    "unknown_segment": (ProblemKind.UNKNOWN_SEGMENT,),
    "link_disagreement": LINK_PROBLEMS,
}
# A won or lost issue without a close_qtr has its own check, read off the issue itself.
OTHER_PROBLEMS = tuple(
    kind
    for kind in ProblemKind
    if kind != ProblemKind.MISSING_CLOSE_QTR and not any(kind in kinds for kinds in NAMED_PROBLEMS.values())
)


@dataclass(frozen=True)
class Check:
    """One data-quality check: what it finds, why it matters and where it is fixed."""

    slug: str
    title: str
    why: str
    record: str  # "opportunity", "issue", "problem" or "engagement_manager": how its rows look
    rows: Callable[[date], QuerySet]


def _open_opportunities() -> QuerySet[Opportunity]:
    return Opportunity.objects.filter(is_closed=False).alias(
        rationale_trimmed=Trim("em_confidence_rationale")
    )


def _opportunity_rows(queryset: QuerySet[Opportunity]) -> QuerySet:
    return queryset.values(
        "salesforce_id",
        "name",
        "close_date",
        "close_quarter",
        "stage_name",
        "owner_name",
        "em_confidence_rationale",
        account_name=F("account__name"),
        em_name=F("engagement_manager__name"),
        em_username=F("engagement_manager__gitlab_username"),
        level=confidence(),
        ps_amount=ps_amount(),
    ).order_by("close_date", "salesforce_id")


def _issue_rows(queryset: QuerySet[ScopingIssue]) -> QuerySet:
    return queryset.values(
        "iid",
        "title",
        "stage",
        "state",
        "segment",
        "close_qtr",
        "last_activity_at",
        "labels",
        em_name=F("engagement_manager__name"),
    ).order_by("-iid")


def _problem_rows(kinds: tuple[str, ...]) -> QuerySet:
    return (
        DataQualityProblem.objects.filter(kind__in=kinds)
        .values(
            "kind",
            "labels",
            "message",
            iid=F("issue__iid"),
            title=F("issue__title"),
            salesforce_id=F("opportunity__salesforce_id"),
            opportunity_name=F("opportunity__name"),
        )
        .order_by("kind", "-issue__iid", "pk")
    )


FILTERS: dict[str, Callable[[date], Q]] = {
    "opportunity_without_em": lambda today: Q(engagement_manager__isnull=True),
    "confidence_without_rationale": lambda today: Q(
        em_confidence__in=EMConfidence.needing_rationale(), rationale_trimmed=""
    ),
    "grey_closing_soon": lambda today: (
        (Q(em_confidence=EMConfidence.GREY) | Q(em_confidence=""))
        & Q(close_date__lte=today + timedelta(days=GREY_WARNING_DAYS))
    ),
    "issue_without_em": lambda today: Q(state="opened", engagement_manager__isnull=True),
    "outcome_without_close_qtr": lambda today: Q(stage__in=Stage.outcomes(), close_qtr=""),
}


def _opportunities(slug: str) -> Callable[[date], QuerySet]:
    return lambda today: _opportunity_rows(_open_opportunities().filter(FILTERS[slug](today)))


def _issues(slug: str) -> Callable[[date], QuerySet]:
    return lambda today: _issue_rows(ScopingIssue.objects.current().filter(FILTERS[slug](today)))


def _problems(kinds: tuple[str, ...]) -> Callable[[date], QuerySet]:
    return lambda today: _problem_rows(kinds)


def _unlinked_ems(today: date) -> QuerySet:
    return EngagementManager.objects.active().unlinked().values("pk", "name", "email").order_by("name", "pk")


CHECKS = [
    Check(
        "opportunity_without_em",
        "Open opportunities without an engagement manager",
        "Nobody forecasts them: they count in the pipeline under no one.",
        "opportunity",
        _opportunities("opportunity_without_em"),
    ),
    Check(
        "issue_without_em",
        "Open scoping issues without an engagement manager",
        "Nobody works them; their win or loss counts under no one.",
        "issue",
        _issues("issue_without_em"),
    ),
    Check(
        "confidence_without_rationale",
        "Red or Amber without a rationale",
        "The team's process asks for the reason behind every Red and Amber.",
        "opportunity",
        _opportunities("confidence_without_rationale"),
    ),
    Check(
        "grey_closing_soon",
        f"Grey within {GREY_WARNING_DAYS} days of CloseDate",
        "Closing soon (or overdue) and the EM still has no visibility.",
        "opportunity",
        _opportunities("grey_closing_soon"),
    ),
    Check(
        "outcome_without_close_qtr",
        "Won or lost issues without a close_qtr",
        "Without a readable close_qtr a win or loss counts in no quarter's win rate.",
        "issue",
        _issues("outcome_without_close_qtr"),
    ),
    Check(
        "two_workflow_labels",
        "Issues with two workflow labels",
        "PS Plan cannot tell which stage the issue is in.",
        "problem",
        _problems(NAMED_PROBLEMS["two_workflow_labels"]),
    ),
    Check(
        "unknown_segment",
        "Unknown segments",
        "A segment label PS Plan does not know counts under no segment.",
        "problem",
        _problems(NAMED_PROBLEMS["unknown_segment"]),
    ),
    Check(
        "link_disagreement",
        "Issue ↔ opportunity link disagreements",
        "The issue and the opportunity name different records, or a named one is not mirrored.",
        "problem",
        _problems(NAMED_PROBLEMS["link_disagreement"]),
    ),
    Check(
        "unlinked_em",
        "Engagement managers not linked to a GitLab user",
        "Their GitLab assignments are not recognised, and their issues cannot be filtered by them.",
        "engagement_manager",
        _unlinked_ems,
    ),
    Check(
        "other_problems",
        "Other label and link problems",
        "Found at the last sync: malformed or repeated labels, EMs that disagree, outcomes on open issues.",
        "problem",
        _problems(OTHER_PROBLEMS),
    ),
]
CHECKS_BY_SLUG = {check.slug: check for check in CHECKS}


def check_counts(*, today: date) -> dict[str, int]:
    """How many records each check finds: four aggregate queries, whatever the data."""
    opportunities = _open_opportunities().aggregate(
        **{slug: Count("id", filter=FILTERS[slug](today)) for slug in _slugs("opportunity")}
    )
    issues = ScopingIssue.objects.current().aggregate(
        **{slug: Count("id", filter=FILTERS[slug](today)) for slug in _slugs("issue")}
    )
    problems = DataQualityProblem.objects.aggregate(
        **{slug: Count("id", filter=Q(kind__in=kinds)) for slug, kinds in _problem_kinds().items()}
    )
    unlinked = EngagementManager.objects.active().unlinked().aggregate(unlinked_em=Count("id"))
    counted: dict[str, Any] = {**opportunities, **issues, **problems, **unlinked}
    return {check.slug: counted[check.slug] for check in CHECKS}


def _slugs(record: str) -> list[str]:
    return [check.slug for check in CHECKS if check.record == record and check.slug in FILTERS]


def _problem_kinds() -> dict[str, tuple[str, ...]]:
    return {**NAMED_PROBLEMS, "other_problems": OTHER_PROBLEMS}
