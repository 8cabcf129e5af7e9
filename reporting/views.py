"""Leadership's report pages. Each page's `?csv=<table>` downloads one of its tables with its filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone

from opportunities.filters import ForecastFilter
from opportunities.models import EngagementManager, Opportunity, salesforce_url_prefix
from psplan.audit import ChangeSource
from psplan.csv_export import Column, csv_response
from psplan.fiscal import FiscalQuarter
from psplan.permissions import staff_only
from reporting import audit, charts, deals, exports, quality, selectors, stale
from reporting.filters import DealFilter, WinRateWindowFilter
from reporting.forms import AuditForm, QuarterForm
from scoping.models import ScopingIssue

ROWS_SHOWN = 100  # a longer list is in the table's CSV
AUDIT_ROWS_PER_PAGE = 100
CHECK_ROWS_SHOWN = 25  # the data-quality page has ten such tables
Export = Callable[[], tuple[Iterable[Column], Iterable[dict[str, Any]]]]


def _csv(request, page: str, exports_by_table: dict[str, Export]) -> HttpResponse:
    """The table named by `?csv=` as a download; the page's filters already shaped it."""
    table = request.GET["csv"]
    if table not in exports_by_table:
        raise Http404(f"This page has no table {table!r}.")
    columns, rows = exports_by_table[table]()
    return csv_response(filename=f"{page}-{table}", columns=list(columns), rows=rows)


def _invalid_csv() -> HttpResponse:
    return HttpResponseBadRequest(
        "Fix the page's filters first: they are not valid.", content_type="text/plain"
    )


def _scope(filterset, names: Iterable[str]) -> list[tuple[str, str]]:
    """The page's filters in effect, as the list it drills down to takes them."""
    data = filterset.form.cleaned_data if filterset.is_valid() else {}
    return [(name, data[name]) for name in names if data.get(name)]


def _common(request, **context) -> dict[str, Any]:
    query = request.GET.copy()
    query.pop("csv", None)
    query.pop("preview", None)
    return {
        "query": query.urlencode(),
        "currency": settings.PSPLAN_CURRENCY,
        "current_quarter": FiscalQuarter.current().code,
        "stale_months": settings.PSPLAN_STALE_AFTER_MONTHS,
        "engagement_managers": EngagementManager.objects.active().exclude(gitlab_username=""),
        **context,
    }


def win_rate(request):
    """Won / (won + lost) over nine quarters: overall, by EM and by segment, each figure a link."""
    filterset = WinRateWindowFilter(request.GET, queryset=ScopingIssue.objects.current())
    period = QuarterForm(request.GET, default=FiscalQuarter.current())
    valid = filterset.is_valid() and period.is_valid()
    window = selectors.win_rate_window(issues=filterset.qs, through=period.chosen) if valid else None
    if "csv" in request.GET:
        return _csv(request, "win-rate", _win_rate_exports(window)) if window else _invalid_csv()
    context = _common(
        request,
        filterset=filterset,
        period=period,
        window=window,
        trend=_trend(window) if window else None,
        issue_scope=_scope(filterset, ["engagement_manager", "segment"]),
    )
    return render(request, "reporting/win_rate.html", context)


def _trend(window: selectors.WinRateWindow) -> charts.Chart:
    return charts.trend(
        slug="win-rate-trend",
        title=f"Win rate, {window.quarters[0]} to {window.quarters[-1]}",
        quarters=window.quarters,
        won=[tally.won for tally in window.overall],
        lost=[tally.lost for tally in window.overall],
    )


def _win_rate_exports(window: selectors.WinRateWindow) -> dict[str, Export]:
    return {
        "by_quarter": lambda: (exports.WIN_RATE_BY_QUARTER, exports.win_rate_by_quarter(window)),
        "by_engagement_manager": lambda: (
            exports.WIN_RATE_BY_EM,
            exports.win_rate_matrix(window, window.by_engagement_manager),
        ),
        "by_segment": lambda: (
            exports.WIN_RATE_BY_SEGMENT,
            exports.win_rate_matrix(window, window.by_segment),
        ),
    }


def forecast(request):
    """The open pipeline by close quarter, by EM and beside Salesforce's forecast category."""
    filterset = ForecastFilter(request.GET, queryset=Opportunity.objects.all())
    current = FiscalQuarter.current()
    report = (
        selectors.forecast_report(opportunities=filterset.qs, current=current)
        if filterset.is_valid()
        else None
    )
    if "csv" in request.GET:
        return (
            _csv(request, "forecast", _forecast_exports(report, filterset, current))
            if report
            else _invalid_csv()
        )
    context = _common(
        request,
        filterset=filterset,
        report=report,
        pipeline_chart=_pipeline_chart(report) if report else None,
        closing=selectors.closing_in(opportunities=filterset.qs, quarter=current)[:ROWS_SHOWN]
        if report
        else [],
        opportunity_scope=_scope(filterset, ["engagement_manager", "em_confidence", "close_quarter"]),
        salesforce_base=salesforce_url_prefix(),
        rows_shown=ROWS_SHOWN,
    )
    return render(request, "reporting/forecast.html", context)


_CONFIDENCE_CSS = {value: f"conf-{value.lower()}" for value in selectors.CONFIDENCE_COLUMNS}


def _pipeline_chart(report: selectors.ForecastReport) -> charts.Chart:
    grid = report.by_quarter
    return charts.stacked_columns(
        slug="pipeline-by-quarter",
        title="Open pipeline by close quarter and EM confidence",
        categories=[row.label for row in grid.rows],
        series=[
            (column, _CONFIDENCE_CSS[column], [row.cells[index].amount for row in grid.rows])
            for index, column in enumerate(grid.columns)
        ],
        unit=settings.PSPLAN_CURRENCY,
    )


def _forecast_exports(
    report: selectors.ForecastReport, filterset, current: FiscalQuarter
) -> dict[str, Export]:
    money = settings.PSPLAN_CURRENCY

    def grid(name: str, row: str, column: str) -> Export:
        return lambda: (
            exports.grid_columns(row, column),
            exports.grid_rows(getattr(report, name), currency=money),
        )

    return {
        "by_quarter": grid("by_quarter", "Close quarter", "EM confidence"),
        "by_engagement_manager": grid("by_em", "Engagement manager", "EM confidence"),
        "by_forecast_category": grid("by_em_category", "Engagement manager", "Salesforce forecast category"),
        "confidence_vs_category": grid(
            "confidence_vs_category", "EM confidence", "Salesforce forecast category"
        ),
        "closing_this_quarter": lambda: (
            exports.CLOSING_THIS_QUARTER,
            exports.with_currency(selectors.closing_in(opportunities=filterset.qs, quarter=current), money),
        ),
    }


def slipped_deals(request):
    """Opportunities whose CloseDate moved out of the quarter after it began."""
    filterset = DealFilter(request.GET, queryset=Opportunity.objects.all())
    period = QuarterForm(request.GET, default=FiscalQuarter.current())
    valid = filterset.is_valid() and period.is_valid()
    chosen = {"opportunities": filterset.qs, "quarter": period.chosen}
    if "csv" in request.GET:
        if not valid:
            return _invalid_csv()
        rows = exports.with_currency(deals.slipped(**chosen).deals, settings.PSPLAN_CURRENCY)
        return _csv(request, "slipped-deals", {"slipped": lambda: (exports.SLIPPED, rows)})
    context = _common(
        request,
        filterset=filterset,
        period=period,
        slipped=deals.slipped(**chosen, limit=ROWS_SHOWN) if valid else None,
        salesforce_base=salesforce_url_prefix(),
        rows_shown=ROWS_SHOWN,
    )
    return render(request, "reporting/slipped_deals.html", context)


def calibration(request):
    """How often each EM confidence held, for the deals due in the last four quarters."""
    filterset = DealFilter(request.GET, queryset=Opportunity.objects.all())
    period = QuarterForm(request.GET, default=FiscalQuarter.current().previous())
    valid = filterset.is_valid() and period.is_valid()
    chosen = {
        "opportunities": filterset.qs,
        "quarters": period.chosen.ending_series(deals.CALIBRATION_QUARTERS),
    }
    report = deals.calibration(**chosen) if valid else None
    if "csv" in request.GET:
        return (
            _csv(request, "calibration", _calibration_exports(report, chosen)) if report else _invalid_csv()
        )
    context = _common(
        request,
        filterset=filterset,
        period=period,
        report=report,
        chart=_calibration_chart(report) if report else None,
        outcome_labels=deals.OUTCOME_LABELS,
    )
    return render(request, "reporting/calibration.html", context)


_OUTCOME_CSS = {"won_in_quarter": "out-won", "won_later": "out-later", "lost": "out-lost"}


def _calibration_chart(report: deals.Calibration) -> charts.Chart:
    return charts.shares(
        slug="calibration",
        title=f"How deals turned out by EM confidence, {report.quarters[0]} to {report.quarters[-1]}",
        rows=[(found.confidence, found.counts) for found in report.overall],
        parts=[(deals.OUTCOME_LABELS[outcome], _OUTCOME_CSS[outcome]) for outcome in deals.OUTCOMES],
    )


def _calibration_exports(report: deals.Calibration, chosen: dict[str, Any]) -> dict[str, Export]:
    return {
        "overall": lambda: (exports.CALIBRATION, exports.calibration_overall(report)),
        "by_engagement_manager": lambda: (exports.CALIBRATION_BY_EM, exports.calibration_by_em(report)),
        "deals": lambda: (exports.CALIBRATION_DEALS, deals.calibration_deals(**chosen)),
    }


def stale_issues(request):
    """The inactivity rule: going stale soon, closed this quarter, kept open; and the next run's plan."""
    now, quarter = timezone.now(), FiscalQuarter.current()
    lists = {
        "going_stale": (exports.GOING_STALE, lambda: stale.going_stale(as_of=now)),
        "closed_as_stale": (exports.CLOSED_AS_STALE, lambda: stale.closed_as_stale(quarter=quarter)),
        "overrides": (exports.OVERRIDES, lambda: stale.overrides(as_of=now)),
        "preview": (exports.PREVIEW, lambda: [asdict(row) for row in stale.preview(as_of=now).rows]),
    }
    if "csv" in request.GET:
        return _csv(request, "stale", {name: (lambda c=c, r=r: (c, r())) for name, (c, r) in lists.items()})
    going = lists["going_stale"][1]()
    context = _common(
        request,
        quarter=quarter,
        going_stale=going[:ROWS_SHOWN],
        going_stale_count=len(going),
        closed=stale.closed_as_stale(quarter=quarter)[:ROWS_SHOWN],
        overrides=stale.overrides(as_of=now, limit=ROWS_SHOWN),
        counts=stale.counts(as_of=now, quarter=quarter),
        preview=stale.preview(as_of=now) if request.GET.get("preview") else None,
        warning_days=settings.PSPLAN_STALE_WARNING_DAYS,
        rows_shown=ROWS_SHOWN,
    )
    return render(request, "reporting/stale.html", context)


def data_quality(request):
    """Everything a person should fix, each row linking to where it is fixed."""
    today = timezone.localdate()
    if "csv" in request.GET:
        return _csv(
            request, "data-quality", {check.slug: _quality_export(check, today) for check in quality.CHECKS}
        )
    counts = quality.check_counts(today=today)
    sections = [
        (check, counts[check.slug], check.rows(today)[:ROWS_SHOWN])
        for check in quality.CHECKS
        if counts[check.slug]
    ]
    context = _common(
        request,
        checks=[(check, counts[check.slug]) for check in quality.CHECKS],
        sections=sections,
        total=sum(counts.values()),
        salesforce_base=salesforce_url_prefix(),
        rows_shown=CHECK_ROWS_SHOWN,
    )
    return render(request, "reporting/data_quality.html", context)


def _quality_export(check: quality.Check, today) -> Export:
    def export():
        rows = check.rows(today)
        if check.record == "opportunity":
            rows = exports.with_currency(rows, settings.PSPLAN_CURRENCY)
        return exports.QUALITY[check.record], rows

    return export


@staff_only
def audit_trail(request):
    """Staff: every recorded change, who made it, from where, and whether the other system has it yet."""
    form = AuditForm(request.GET or None)
    filters = form.filters() if form.is_valid() else audit.AuditFilters()
    rows = audit.trail(filters)
    if "csv" in request.GET:
        return csv_response(
            filename="audit-trail",
            columns=audit.COLUMNS,
            rows=(audit.described(row) for row in rows),
        )
    page = Paginator(rows, AUDIT_ROWS_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = [audit.described(row) for row in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "reporting/audit_trail.html",
        {"form": form, "page": page, "query": query.urlencode(), "sources": ChangeSource.choices},
    )
