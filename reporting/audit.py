"""The audit trail: every recorded change to a scoping issue or an opportunity, from any side, in one list.

Changes made in PS Plan carry the write that takes them to GitLab or Salesforce, so each row also says
whether the other system has it yet. One query: the two history tables side by side (UNION ALL).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import CharField, F, IntegerField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce

from opportunities.models import OpportunityChange
from psplan.audit import source_name
from psplan.csv_export import Column
from scoping.models import IssueChange

COLUMNS = [
    Column("changed_at", "When"),
    Column("record", "Record"),
    Column("field", "Field"),
    Column("old_value", "Before"),
    Column("new_value", "After"),
    Column("who", "Who"),
    Column("source", "From"),
    Column("write_status", "Delivery"),
    Column("write_error", "Delivery error"),
]


@dataclass(frozen=True)
class AuditFilters:
    """What a staff member narrows the trail to; empty means everything."""

    issue: int | None = None
    opportunity: str = ""
    person: str = ""
    source: str = ""


def _shape(
    queryset: QuerySet, *, kind: str, record: F, iid: F | Value, opportunity: F | Value, note: F | Value
) -> QuerySet:
    """The columns both history tables share, in the same order, for the UNION."""
    return queryset.values(
        "pk",
        "changed_at",
        "field",
        "old_value",
        "new_value",
        "source",
        "actor_name",
    ).annotate(
        note=note,
        kind=Value(kind, output_field=CharField()),
        record=record,
        iid=iid,
        opportunity=opportunity,
        actor_username=Coalesce(F("actor__username"), Value("")),
        write_status=Coalesce(F("write__status"), Value("")),
        write_error=Coalesce(F("write__last_error"), Value(""), output_field=TextField()),
    )


def described(row: dict) -> dict:
    """The row with the person behind the change (the PS Plan user, else the name the other system gave,
    else the system) and where it came from in words."""
    source = source_name(row["source"])
    return {**row, "who": row["actor_username"] or row["actor_name"] or source, "source": source}


def trail(filters: AuditFilters) -> QuerySet:
    """Every change that matches the filters, newest first, as rows of the COLUMNS (one query)."""
    issue_changes = IssueChange.objects.all()
    opportunity_changes = OpportunityChange.objects.all()
    if filters.issue is not None:
        issue_changes = issue_changes.filter(issue__iid=filters.issue)
        opportunity_changes = opportunity_changes.filter(opportunity__scoping_issues__iid=filters.issue)
    if filters.opportunity:
        wanted = Q(opportunity__salesforce_id__startswith=filters.opportunity[:15]) | Q(
            opportunity__name__icontains=filters.opportunity
        )
        issue_changes = issue_changes.filter(
            Q(issue__opportunity__salesforce_id__startswith=filters.opportunity[:15])
            | Q(issue__opportunity__name__icontains=filters.opportunity)
        )
        opportunity_changes = opportunity_changes.filter(wanted)
    if filters.person:
        person = (
            Q(actor__username__iexact=filters.person)
            | Q(actor__first_name__icontains=filters.person)
            | Q(actor__last_name__icontains=filters.person)
            | Q(actor_name__iexact=filters.person)
        )
        issue_changes, opportunity_changes = issue_changes.filter(person), opportunity_changes.filter(person)
    if filters.source:
        issue_changes = issue_changes.filter(source=filters.source)
        opportunity_changes = opportunity_changes.filter(source=filters.source)
    issues = _shape(
        issue_changes,
        kind="issue",
        record=Cast("issue__iid", CharField()),
        iid=F("issue__iid"),
        opportunity=Value("", output_field=CharField()),
        note=F("note"),
    )
    opportunities = _shape(
        opportunity_changes,
        kind="opportunity",
        record=F("opportunity__name"),
        iid=Value(None, output_field=IntegerField()),
        opportunity=F("opportunity__salesforce_id"),
        note=Value("", output_field=TextField()),  # Salesforce edits carry no comment
    )
    return issues.union(opportunities, all=True).order_by("-changed_at", "-pk")
