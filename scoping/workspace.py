"""What the EM pages read: bounded boards (capped columns, swimlanes), the triage queue, "My work".

Each function costs a fixed number of queries whatever the number of issues, and returns at most a
fixed number of rows, so a page stays small with 20,000 issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Func, IntegerField, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from opportunities.choices import EMConfidence, Segment
from opportunities.models import (
    EngagementManager,
    Opportunity,
    SalesforceWrite,
    TerritoryAssignment,
    opportunity_url,
)
from opportunities.selectors import ps_amount
from psplan.fiscal import add_months
from psplan.prepared import PreparedRows
from psplan.queue import WriteStatus
from psplan.widgets import select_html
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import GitLabWrite, ScopingIssue, goes_stale_soon
from scoping.selectors import People, with_stage_entered_at, with_write_state
from scoping.triage import TRIAGE_ISSUE_LOOKUPS, Suggestion, TriageIssue, suggest

RECENTLY_CLOSED = timedelta(days=90)
COLUMN_CAP = 25
LANE_CELL_CAP = 3
LANES_PER_PAGE = 8
TRIAGE_PER_PAGE = 25
FIRST_TOUCH = timedelta(hours=24)
MY_WORK_CAP = 25
CLOSING_SOON = timedelta(days=30)
# Collapsed unless an EM opens them: they hold finished work, not today's.
CLOSED_STAGES = (Stage.CLOSED_WON, Stage.CLOSED_LOST, Stage.CLOSED)


@dataclass(frozen=True)
class Card:
    """What a board card shows, read in the same query as the board (no model instances per card)."""

    pk: int
    iid: int
    title: str
    stage: str
    em_status: str
    engagement_manager_id: int | None
    em_name: str | None
    account_name: str | None
    opportunity_name: str | None
    ps_amount: Decimal | None
    em_confidence: str | None
    stale_now: bool
    going_stale_now: bool
    write_state: str
    write_error: str
    stage_entered_at: datetime


_CARD_RELATED = {
    "em_name": F("engagement_manager__name"),
    "account_name": F("opportunity__account__name"),
    "opportunity_name": F("opportunity__name"),
    "em_confidence": F("opportunity__em_confidence"),
    "ps_amount": ps_amount(through="opportunity__"),
}
# The card's own columns and with_card_facts' annotations: every other field of Card.
_CARD_FIELDS = tuple(f.name for f in fields(Card) if f.name not in _CARD_RELATED)


def with_card_facts(queryset: QuerySet[ScopingIssue], *, as_of: datetime) -> QuerySet[ScopingIssue]:
    """Staleness, write-back state and stage age, annotated for cards and lists."""
    return with_stage_entered_at(with_write_state(queryset.with_staleness(as_of=as_of)))


def cards(queryset: QuerySet[ScopingIssue]) -> list[Card]:
    """The cards of issues annotated by with_card_facts, from one values() query."""
    return [Card(**row) for row in queryset.values(*_CARD_FIELDS, **_CARD_RELATED)]


def board_issues(*, as_of: datetime) -> QuerySet[ScopingIssue]:
    """Open issues and those closed in the last 90 days."""
    return ScopingIssue.objects.current().filter(
        Q(state=IssueState.OPENED) | Q(closed_at__gte=as_of - RECENTLY_CLOSED)
    )


@dataclass
class Column:
    stage: Stage
    cards: list[Card] = field(default_factory=list)
    total: int = 0

    @property
    def hidden(self) -> int:
        return self.total - len(self.cards)

    @property
    def collapsed(self) -> bool:
        return self.total == 0 or self.stage in CLOSED_STAGES

    @property
    def closed(self) -> bool:
        return self.stage in CLOSED_STAGES


@dataclass
class Lane:
    engagement_manager: EngagementManager | None
    columns: list[Column]

    @property
    def total(self) -> int:
        return sum(column.total for column in self.columns)


def _capped(queryset: QuerySet[ScopingIssue], *, cap: int, partition: list) -> QuerySet[ScopingIssue]:
    """The first `cap` issues of each partition, least recently active first, in one query."""
    return (
        queryset.annotate(
            position=Window(RowNumber(), partition_by=partition, order_by=[F("last_activity_at").asc(), "pk"])
        )
        .filter(position__lte=cap)
        .order_by("last_activity_at", "pk")
    )


def _counts(queryset: QuerySet[ScopingIssue], *by: str) -> dict[tuple, int]:
    rows = queryset.order_by().values(*by).annotate(total=Count("pk"))
    return {tuple(row[name] for name in by): row["total"] for row in rows}


def em_board(engagement_manager: EngagementManager, *, as_of: datetime) -> list[Column]:
    """One EM's columns, each capped at COLUMN_CAP cards with its true total."""
    issues = board_issues(as_of=as_of).for_em(engagement_manager)
    totals = _counts(issues, "stage")
    columns = {stage: Column(stage, total=totals.get((stage.value,), 0)) for stage in Stage}
    for card in cards(_capped(with_card_facts(issues, as_of=as_of), cap=COLUMN_CAP, partition=[F("stage")])):
        columns[Stage(card.stage)].cards.append(card)
    return list(columns.values())


def swimlanes(
    page_number: str | int | None, *, engagement_managers: dict[int, EngagementManager], as_of: datetime
) -> tuple[Page, list[Lane]]:
    """Everyone's board: one lane per EM with open work (unassigned first), a page of lanes at a time;
    `engagement_managers` by id, every one of them (see selectors.People)."""
    issues = board_issues(as_of=as_of)
    totals = _counts(issues, "engagement_manager", "stage")
    em_ids = {em_id for em_id, _stage in totals}
    by_id = engagement_managers
    lane_ids = sorted(em_ids, key=lambda em_id: (em_id is not None, by_id[em_id].name if em_id else ""))
    page = Paginator(lane_ids, LANES_PER_PAGE).get_page(page_number)
    on_page = list(page.object_list)
    lanes = {
        em_id: Lane(
            by_id.get(em_id), [Column(stage, total=totals.get((em_id, stage.value), 0)) for stage in Stage]
        )
        for em_id in on_page
    }
    in_lanes = Q(engagement_manager__in=[i for i in on_page if i]) | (
        Q(engagement_manager__isnull=True) if None in on_page else Q(pk__in=[])
    )
    capped = _capped(
        with_card_facts(issues.filter(in_lanes), as_of=as_of),
        cap=LANE_CELL_CAP,
        partition=[F("engagement_manager"), F("stage")],
    )
    stage_index = {stage.value: n for n, stage in enumerate(Stage)}
    for card in cards(capped):
        lanes[card.engagement_manager_id].columns[stage_index[card.stage]].cards.append(card)
    return page, [lanes[em_id] for em_id in on_page]


def triage_page(page_number: str | int | None) -> Page:
    """Untriaged issues (TriageIssue), oldest first, a page at a time. The page's issues are picked by id
    first (a partial index has the queue in order), so that only they are joined to their opportunities;
    how many wait comes with them from a subquery, not a COUNT of its own."""
    number = _page_number(page_number)
    if number is not None:
        first = (number - 1) * TRIAGE_PER_PAGE
        found = list(_TRIAGE_ROWS.filter(pk__in=_TRIAGE_QUEUE.values("pk")[first : first + TRIAGE_PER_PAGE]))
        if found or number == 1:
            paginator = Paginator(_TRIAGE_QUEUE, TRIAGE_PER_PAGE)
            paginator.count = found[0][-1] if found else 0
            return Page([TriageIssue(*row[:-1]) for row in found], number, paginator)
    # Not a page number, or past the last page: Django's paginator picks the page, counting on its own.
    page = Paginator(_TRIAGE_ROWS.filter(pk__in=_TRIAGE_QUEUE.values("pk")), TRIAGE_PER_PAGE).get_page(
        page_number
    )
    page.object_list = [TriageIssue(*row[:-1]) for row in page.object_list]
    return page


# Built once (each read filters a fresh copy): triage reads them on every request.
_TRIAGE_QUEUE = ScopingIssue.objects.untriaged().order_by("created_at", "pk")
_TRIAGE_ROWS = (
    ScopingIssue.objects.annotate(
        # COUNT(*) of the whole queue: annotate(Count()) would count per issue.
        waiting=Subquery(
            _TRIAGE_QUEUE.order_by().annotate(total=Func("pk", function="COUNT")).values("total"),
            output_field=IntegerField(),
        )
    )
    .order_by("created_at", "pk")
    .values_list(*TRIAGE_ISSUE_LOOKUPS, "waiting")
)


def _page_number(text: str | int | None) -> int | None:
    """The page asked for, if the database can skip to it: an offset past a 64-bit integer is an error
    there, where the paginator's own count shows it is past the end."""
    try:
        number = int(text or 1)
    except ValueError:
        return None
    return number if number >= 1 and number * TRIAGE_PER_PAGE < 2**63 else None


def is_overdue(issue: TriageIssue, *, as_of: datetime) -> bool:
    """The team answers a new scoping issue within 24 hours of its creation."""
    return issue.created_at < as_of - FIRST_TOUCH


@dataclass(frozen=True)
class TriageRow:
    issue: TriageIssue
    suggestion: Suggestion
    overdue: bool
    age: str
    segment: str
    engagement_manager: str
    segment_select: str
    engagement_manager_select: str
    errors: tuple[str, ...] = ()


_SEGMENT_CHOICES = tuple((str(value), str(label)) for value, label in Segment.choices)


def triage_rows(
    issues: list[TriageIssue],
    *,
    people: People,
    as_of: datetime,
    posted: forms.Form | None = None,
) -> list[TriageRow]:
    """Each issue with its suggestion among the assignable EMs (by name) preselected, or what a refused
    form posted, with its errors."""
    em_choices = (("", "---------"), *((em.gitlab_username, em.name) for em in people.assignable))
    suggestions = suggest(issues, people)
    rows = []
    for issue in issues:
        suggestion = suggestions[issue.pk]
        em = suggestion.engagement_manager
        segment = posted.data.get("segment", "") if posted else suggestion.segment
        username = posted.data.get("engagement_manager", "") if posted else (em.gitlab_username if em else "")
        rows.append(
            TriageRow(
                issue=issue,
                suggestion=suggestion,
                overdue=is_overdue(issue, as_of=as_of),
                age=_age(issue.created_at, as_of),
                segment=segment,
                engagement_manager=username,
                segment_select=select_html(
                    "segment", _SEGMENT_CHOICES, segment, id=f"id_triage_{issue.iid}_segment"
                ),
                engagement_manager_select=select_html(
                    "engagement_manager", em_choices, username, id=f"id_triage_{issue.iid}_engagement_manager"
                ),
                errors=tuple(
                    message for errors in (posted.errors.values() if posted else ()) for message in errors
                ),
            )
        )
    return rows


def _age(moment: datetime, as_of: datetime) -> str:
    hours = int((as_of - moment).total_seconds() // 3600)
    return f"{hours} h" if hours < 48 else f"{hours // 24} d"


@dataclass(frozen=True)
class WorkItem:
    """One line of a "My work" list."""

    iid: int
    title: str
    stage: str
    place: str
    created_at: datetime
    last_activity_at: datetime

    @property
    def stage_label(self) -> str:
        return Stage(self.stage).label

    @property
    def goes_stale_at(self) -> datetime:
        return add_months(self.last_activity_at, settings.PSPLAN_STALE_AFTER_MONTHS)


@dataclass(frozen=True)
class ClosingOpportunity:
    """A Grey or Red opportunity closing soon, as "My work" and its e-mail show it."""

    salesforce_id: str
    name: str
    em_confidence: str
    close_date: date
    ps_amount: Decimal | None
    account_name: str | None

    @property
    def salesforce_url(self) -> str:
        return opportunity_url(self.salesforce_id)


@dataclass(frozen=True)
class RefusedIssueChange:
    """A change to an issue GitLab refused."""

    iid: int
    title: str
    last_error: str


@dataclass(frozen=True)
class RefusedOpportunityChange:
    """A change to an opportunity Salesforce refused."""

    salesforce_id: str
    name: str
    last_error: str

    @property
    def salesforce_url(self) -> str:
        return opportunity_url(self.salesforce_id)


@dataclass
class MyWork:
    untriaged: list[WorkItem]
    going_stale: list[WorkItem]
    to_do: list[WorkItem]
    closing_opportunities: list[ClosingOpportunity]
    failed_gitlab: list[RefusedIssueChange]
    failed_salesforce: list[RefusedOpportunityChange]

    @property
    def failed_count(self) -> int:
        return len(self.failed_gitlab) + len(self.failed_salesforce)


_WORK_ITEM_FIELDS = ("iid", "title", "stage", "created_at", "last_activity_at")
# The issue lists of "My work", each in the order it is shown in.
_WORK_LIST_ORDERS = {
    "untriaged": ("created_at", "pk"),
    "going_stale": ("last_activity_at", "pk"),
    "to_do": ("last_activity_at", "pk"),
}


def _work_candidates(engagement_manager: int) -> QuerySet:
    """The issues that can be on the EM's lists: their open ones and the untriaged ones of their
    territories."""
    my_territories = TerritoryAssignment.objects.filter(engagement_manager=engagement_manager).values(
        "territory"
    )
    return (
        ScopingIssue.objects.open()
        .with_untriaged()
        .filter(
            Q(engagement_manager=engagement_manager)
            | Q(engagement_manager__isnull=True, opportunity__account__territory__in=my_territories)
        )
        .values(
            "pk",
            "engagement_manager_id",
            "em_status",
            "keep_open_until",
            "untriaged_now",
            *_WORK_ITEM_FIELDS,
            place=Coalesce("opportunity__account__name", "opportunity__name", Value("")),
        )
    )


def _closing_opportunities(engagement_manager: int, first_day: date, last_day: date) -> QuerySet:
    """The EM's open Grey or Red opportunities closing between the two days, soonest first."""
    return (
        Opportunity.objects.open()
        .for_em(engagement_manager)
        .filter(
            em_confidence__in=[EMConfidence.GREY, EMConfidence.RED],
            close_date__gte=first_day,
            close_date__lte=last_day,
        )
        .order_by("close_date", "name")
        .values(
            "salesforce_id",
            "name",
            "em_confidence",
            "close_date",
            ps_amount=ps_amount(),
            account_name=F("account__name"),
        )[:MY_WORK_CAP]
    )


def _failed_gitlab_writes(engagement_manager: int, user: int | None) -> QuerySet:
    """Writes GitLab refused, on the EM's issues or made by the user, newest first."""
    return (
        GitLabWrite.objects.filter(status=WriteStatus.FAILED)
        .filter(Q(issue__engagement_manager=engagement_manager) | Q(created_by=user))
        .order_by("-created_at", "-id")
        .values("last_error", iid=F("issue__iid"), title=F("issue__title"))[:MY_WORK_CAP]
    )


def _failed_salesforce_writes(engagement_manager: int, user: int | None) -> QuerySet:
    """Writes Salesforce refused, on the EM's opportunities or made by the user, newest first."""
    return (
        SalesforceWrite.objects.filter(status=WriteStatus.FAILED)
        .filter(Q(opportunity__engagement_manager=engagement_manager) | Q(created_by=user))
        .order_by("-created_at", "-id")
        .values("last_error", salesforce_id=F("opportunity__salesforce_id"), name=F("opportunity__name"))[
            :MY_WORK_CAP
        ]
    )


# Prepared (see psplan.prepared): "My work" reads each on every request, and writing their SQL cost as much
# as running it. An EM without a user account passes user None, which is no write's author: SQL's
# `= NULL` is never true, where filter(created_by=None) would take every write the rules made.
_WORK_CANDIDATES = PreparedRows(_work_candidates, engagement_manager=(1, 2))
_CLOSING_OPPORTUNITIES = PreparedRows(
    _closing_opportunities,
    engagement_manager=(1, 2),
    first_day=(date(2001, 1, 1), date(2002, 2, 2)),
    last_day=(date(2003, 3, 3), date(2004, 4, 4)),
)
_FAILED_GITLAB_WRITES = PreparedRows(_failed_gitlab_writes, engagement_manager=(1, 2), user=(3, 4))
_FAILED_SALESFORCE_WRITES = PreparedRows(_failed_salesforce_writes, engagement_manager=(1, 2), user=(3, 4))


def _work_issues(engagement_manager: EngagementManager, *, as_of: datetime) -> dict[str, list[WorkItem]]:
    """The issue lists of "My work" from one query of the issues that can be on them, sorted into lists
    here: one query instead of one per list, as building and sending each query was most of the page's
    time."""
    lists: dict[str, list[tuple[tuple, WorkItem]]] = {name: [] for name in _WORK_LIST_ORDERS}
    for row in _WORK_CANDIDATES(engagement_manager=engagement_manager.pk):
        mine = row["engagement_manager_id"] == engagement_manager.pk
        on = {
            "untriaged": row["untriaged_now"],
            "going_stale": mine
            and goes_stale_soon(
                last_activity_at=row["last_activity_at"], keep_open_until=row["keep_open_until"], as_of=as_of
            ),
            "to_do": mine and row["em_status"] == EMStatus.TODO,
        }
        item = WorkItem(**{name: row[name] for name in (*_WORK_ITEM_FIELDS, "place")})
        for name, order in _WORK_LIST_ORDERS.items():
            if on[name]:
                lists[name].append((tuple(row[key] for key in order), item))
    return {
        name: [item for _order, item in sorted(listed, key=lambda pair: pair[0])[:MY_WORK_CAP]]
        for name, listed in lists.items()
    }


def my_work(engagement_manager: EngagementManager, user, *, as_of: datetime) -> MyWork:
    """An EM's day: what waits for them first, each list capped; plain rows, no model instances. The
    refused writes are those on the EM's issues and opportunities or made by `user` (the EM's account)."""
    today = timezone.localdate(as_of)
    em, author = engagement_manager.pk, user.pk if user else None
    return MyWork(
        **_work_issues(engagement_manager, as_of=as_of),
        closing_opportunities=[
            ClosingOpportunity(**row)
            for row in _CLOSING_OPPORTUNITIES(
                engagement_manager=em, first_day=today, last_day=today + CLOSING_SOON
            )
        ],
        failed_gitlab=[
            RefusedIssueChange(**row) for row in _FAILED_GITLAB_WRITES(engagement_manager=em, user=author)
        ],
        failed_salesforce=[
            RefusedOpportunityChange(**row)
            for row in _FAILED_SALESFORCE_WRITES(engagement_manager=em, user=author)
        ],
    )
