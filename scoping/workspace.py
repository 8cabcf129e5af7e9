"""What the EM pages read: bounded boards (capped columns, swimlanes), the triage queue, "My work".

Each function costs a fixed number of queries whatever the number of issues, and returns at most a
fixed number of rows, so a page stays small with 20,000 issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from opportunities.choices import EMConfidence
from opportunities.models import EngagementManager, Opportunity
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import ScopingIssue
from scoping.selectors import failed_writes_for, with_stage_entered_at, with_write_state

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


def card_issues(queryset: QuerySet[ScopingIssue], *, as_of: datetime) -> QuerySet[ScopingIssue]:
    """Issues with what a card shows: EM, opportunity and account, staleness, write state, stage age."""
    return with_stage_entered_at(
        with_write_state(
            queryset.select_related("engagement_manager", "opportunity__account").with_staleness(as_of=as_of)
        )
    )


def board_issues(*, as_of: datetime) -> QuerySet[ScopingIssue]:
    """Open issues and those closed in the last 90 days."""
    return ScopingIssue.objects.current().filter(
        Q(state=IssueState.OPENED) | Q(closed_at__gte=as_of - RECENTLY_CLOSED)
    )


@dataclass
class Column:
    stage: Stage
    cards: list[ScopingIssue] = field(default_factory=list)
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
    for issue in _capped(card_issues(issues, as_of=as_of), cap=COLUMN_CAP, partition=[F("stage")]):
        columns[Stage(issue.stage)].cards.append(issue)
    return list(columns.values())


def swimlanes(page_number: str | int | None, *, as_of: datetime) -> tuple[Page, list[Lane]]:
    """Everyone's board: one lane per EM with open work (unassigned first), a page of lanes at a time."""
    issues = board_issues(as_of=as_of)
    totals = _counts(issues, "engagement_manager", "stage")
    em_ids = {em_id for em_id, _stage in totals}
    names = dict(EngagementManager.objects.filter(pk__in=em_ids - {None}).values_list("pk", "name"))
    lane_ids = sorted(em_ids, key=lambda em_id: (em_id is not None, names.get(em_id, "")))
    page = Paginator(lane_ids, LANES_PER_PAGE).get_page(page_number)
    on_page = list(page.object_list)
    lanes = {
        em_id: Lane(None, [Column(stage, total=totals.get((em_id, stage.value), 0)) for stage in Stage])
        for em_id in on_page
    }
    in_lanes = Q(engagement_manager__in=[i for i in on_page if i]) | (
        Q(engagement_manager__isnull=True) if None in on_page else Q(pk__in=[])
    )
    cards = _capped(
        card_issues(issues.filter(in_lanes), as_of=as_of),
        cap=LANE_CELL_CAP,
        partition=[F("engagement_manager"), F("stage")],
    )
    for issue in cards:
        lane = lanes[issue.engagement_manager_id]
        lane.engagement_manager = issue.engagement_manager
        lane.columns[list(Stage).index(Stage(issue.stage))].cards.append(issue)
    return page, [lanes[em_id] for em_id in on_page]


def triage_page(page_number: str | int | None) -> Page:
    """Untriaged issues, oldest first, a page at a time."""
    queue = (
        ScopingIssue.objects.untriaged()
        .select_related("engagement_manager", "opportunity__account__territory")
        .order_by("created_at", "pk")
    )
    return Paginator(queue, TRIAGE_PER_PAGE).get_page(page_number)


def is_overdue(issue: ScopingIssue, *, as_of: datetime) -> bool:
    """The team answers a new scoping issue within 24 hours of its creation."""
    return issue.created_at < as_of - FIRST_TOUCH


@dataclass
class MyWork:
    untriaged: list[ScopingIssue]
    going_stale: list[ScopingIssue]
    to_do: list[ScopingIssue]
    closing_opportunities: list[Opportunity]
    failed_gitlab: list
    failed_salesforce: list


def my_work(engagement_manager: EngagementManager, user, *, as_of: datetime) -> MyWork:
    """An EM's day: what waits for them first, each list capped."""
    mine = ScopingIssue.objects.current().for_em(engagement_manager)
    in_my_territories = Q(
        engagement_manager__isnull=True,
        opportunity__account__territory__assignments__engagement_manager=engagement_manager,
    )
    untriaged = ScopingIssue.objects.untriaged().filter(
        Q(engagement_manager=engagement_manager) | in_my_territories
    )
    today = timezone.localdate(as_of)
    closing = (
        Opportunity.objects.open()
        .for_em(engagement_manager)
        .filter(
            em_confidence__in=[EMConfidence.GREY, EMConfidence.RED],
            close_date__gte=today,
            close_date__lte=today + CLOSING_SOON,
        )
        .select_related("account")
        .order_by("close_date", "name")
    )
    failed = failed_writes_for(engagement_manager=engagement_manager, user=user)
    return MyWork(
        untriaged=list(
            card_issues(untriaged.distinct(), as_of=as_of).order_by("created_at", "pk")[:MY_WORK_CAP]
        ),
        going_stale=list(
            card_issues(mine.going_stale(as_of=as_of), as_of=as_of).order_by("last_activity_at")[:MY_WORK_CAP]
        ),
        to_do=list(
            card_issues(mine.open().filter(em_status=EMStatus.TODO), as_of=as_of).order_by(
                "last_activity_at"
            )[:MY_WORK_CAP]
        ),
        closing_opportunities=list(closing[:MY_WORK_CAP]),
        failed_gitlab=list(failed["gitlab"][:MY_WORK_CAP]),
        failed_salesforce=list(failed["salesforce"][:MY_WORK_CAP]),
    )
