"""Each leadership report against the bare SQL of the same figures, on PostgreSQL, in the same run.

    uv run python bench/reports.py [--issues 100000] [--rounds 15]

Uses DATABASE_URL's PostgreSQL server when set (a throwaway test database beside it, dropped after),
else starts a PostgreSQL cluster of its own on 127.0.0.1 and removes it after (bench/throwaway_postgres.py).
Fills it with --issues closed scoping issues, won or lost over the last three years, each with the
firing of the outcome rule that closed it, and their closed opportunities; an open pipeline of a
twentieth of that; CloseDate and EM Confidence history for about a third of the deals; open issues going
stale, kept open or closed by the inactivity rule; and data-quality problems.

For each report page (win rate, forecast, slipped deals, calibration, stale, data quality) it times the
report: every figure and row the page shows, computed by the report's own code (`reporting/`), against
hand-written SQL that computes the same figures, run through the same connection. Both are checked to
agree first, then interleaved --rounds times (more for a fast report: about two seconds' worth); the
fastest runs are compared (on a shared machine other work only ever slows a run). The whole page (the
request a browser makes: sign-in check, report, template) is timed too, and printed for information.
The stale page's on-demand preview of the next rules run is `scoping.rules` itself, timed on its own.

Ends with `report_<name>_vs_sql_ratio` per report and `report_worst_vs_sql_ratio`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_django import django_on_throwaway_database  # noqa: E402
from bench.throwaway_postgres import throwaway_postgres  # noqa: E402

ENGAGEMENT_MANAGERS = 60
CONFIDENCES = ["Green", "Amber", "Red", "Grey", ""]
CATEGORIES = ["Commit", "Best Case", "Pipeline", "Omitted"]
SEGMENTS = [
    "Ent_APAC",
    "Ent_EAST",
    "Ent_WEST",
    "Ent_EMEA",
    "MM_APAC",
    "MM_East",
    "MM_EMEA",
    "MM_West",
    "SMB",
    "",
]
ROWS_SHOWN = 100  # as the pages show (reporting/views.py)
CHECK_ROWS_SHOWN = 25


# --- The data ------------------------------------------------------------------------------------


def fill(issues: int, rng: random.Random) -> None:
    """Closed issues with their closed opportunities, an open pipeline, history, stale and problems."""
    from django.db import connection
    from django.utils import timezone

    from opportunities.models import Account, EngagementManager, Opportunity, OpportunityChange
    from psplan.audit import ChangeSource
    from psplan.fiscal import quarter_code
    from scoping.choices import IssueState, ProblemKind, Stage
    from scoping.models import DataQualityProblem, RuleAction, ScopingIssue

    now, today = timezone.now(), timezone.localdate()
    ems = EngagementManager.objects.bulk_create(
        EngagementManager(
            name=f"Engagement Manager {n:03d}",
            email=f"em{n}@example.com",
            salesforce_user_id=f"005{n:012d}AAA",
            gitlab_username=f"em{n}" if n else "",  # one EM not linked to GitLab
            gitlab_user_id=5000 + n,
        )
        for n in range(ENGAGEMENT_MANAGERS)
    )
    accounts = Account.objects.bulk_create(
        Account(salesforce_id=f"001{n:012d}AAA", name=f"Customer {n}") for n in range(2000)
    )

    def opportunity(n: int, *, close: date, closed: bool, won: bool = False) -> Opportunity:
        em = rng.choice(ems) if rng.random() > 0.08 else None
        confidence = rng.choice(CONFIDENCES)
        return Opportunity(
            salesforce_id=f"006{n:012d}AAA",
            name=f"Opportunity {n}",
            account=rng.choice(accounts),
            stage_name="Closed Won" if won else ("Closed Lost" if closed else "4-Proposal"),
            forecast_category=("Closed" if won else "Omitted") if closed else rng.choice(CATEGORIES),
            is_closed=closed,
            is_won=won,
            close_date=close,
            close_quarter=quarter_code(close),
            amount=Decimal(rng.randrange(10_000, 500_000)),
            proserv_amount=Decimal(rng.randrange(5_000, 90_000)) if rng.random() > 0.3 else None,
            ps_value=Decimal(rng.randrange(5_000, 90_000)) if rng.random() > 0.5 else None,
            engagement_manager=em,
            em_confidence=confidence,
            em_confidence_rationale="" if rng.random() < 0.1 else "Reasons",
        )

    closed = [
        opportunity(
            n, close=today - timedelta(days=rng.randrange(0, 3 * 365)), closed=True, won=rng.random() < 0.55
        )
        for n in range(issues)
    ]
    pipeline = [
        opportunity(issues + n, close=today + timedelta(days=rng.randrange(-90, 365)), closed=False)
        for n in range(issues // 20)
    ]
    Opportunity.objects.bulk_create(closed + pipeline, batch_size=5000)

    def history(deal: Opportunity) -> list[OpportunityChange]:
        """The deal was first due a few weeks earlier or later; some changed confidence on the way."""
        first_due = deal.close_date + timedelta(days=rng.choice([-40, -20, 15, 45]))
        moved_on = min(now, timezone.make_aware(datetime.combine(min(first_due, deal.close_date), clock(10))))
        changes = [
            OpportunityChange(
                opportunity=deal,
                field="CloseDate",
                old_value=first_due.isoformat(),
                new_value=deal.close_date.isoformat(),
                changed_at=moved_on - timedelta(days=rng.randrange(1, 30)),
                source=ChangeSource.SALESFORCE,
                actor_name=rng.choice(["", "Dana Sales"]),
            )
        ]
        if rng.random() < 0.6:
            changes.append(
                OpportunityChange(
                    opportunity=deal,
                    field="EMConfidence",
                    old_value=rng.choice(CONFIDENCES),
                    new_value=deal.em_confidence,
                    changed_at=moved_on - timedelta(days=rng.randrange(1, 60)),
                    source=ChangeSource.PAGE,
                )
            )
        return changes

    OpportunityChange.objects.bulk_create(
        (change for deal in closed + pipeline if rng.random() < 0.35 for change in history(deal)),
        batch_size=5000,
    )

    def decided(n: int, deal: Opportunity) -> ScopingIssue:
        stage = Stage.CLOSED_WON if deal.is_won else Stage.CLOSED_LOST
        segment = rng.choice(SEGMENTS)
        labels = ["Services Calculator", f"proposal::{stage}", f"close_qtr::{deal.close_quarter}"]
        return ScopingIssue(
            gitlab_id=1_000_000 + n,
            iid=n + 1,
            title=f"Scoping: {deal.name}",
            web_url=f"https://gitlab.example/ps/-/issues/{n + 1}",
            state=IssueState.CLOSED,
            labels=labels + ([f"Segment::{segment}"] if segment else []),
            created_at=now - timedelta(days=900),
            updated_at=now - timedelta(days=1),
            closed_at=now - timedelta(days=1),
            last_activity_at=now - timedelta(days=100),
            stage=stage,
            close_qtr=deal.close_quarter if rng.random() > 0.01 else "",
            segment=segment,
            engagement_manager=deal.engagement_manager,
            opportunity=deal,
        )

    def open_issue(n: int) -> ScopingIssue:
        quiet = now - timedelta(days=rng.randrange(0, 120))
        kept = rng.random() < 0.1
        return ScopingIssue(
            gitlab_id=1_000_000 + n,
            iid=n + 1,
            title=f"Scoping: open {n}",
            web_url=f"https://gitlab.example/ps/-/issues/{n + 1}",
            labels=["Services Calculator", "proposal::SOW_WIP"],
            created_at=quiet - timedelta(days=30),
            updated_at=quiet,
            last_activity_at=quiet,
            stage=Stage.SOW_WIP,
            segment=rng.choice(SEGMENTS),
            engagement_manager=rng.choice(ems) if rng.random() > 0.1 else None,
            keep_open_until=today + timedelta(days=rng.randrange(1, 90)) if kept else None,
            keep_open_reason="Customer still deciding" if kept else "",
        )

    ScopingIssue.objects.bulk_create(
        [decided(n, deal) for n, deal in enumerate(closed)]
        + [open_issue(issues + n) for n in range(issues // 50)],
        batch_size=5000,
    )
    # Each decided issue was closed by the outcome rule once, as on a database PS Plan has been running on.
    RuleAction.objects.bulk_create(
        (
            RuleAction(
                issue_id=pk,
                rule=RuleAction.Rule.OPPORTUNITY_WON if is_won else RuleAction.Rule.OPPORTUNITY_LOST,
                reason=f"{salesforce_id}:{close_date or ''}",
                close_qtr=quarter_code(close_date),
                applied_at=now - timedelta(days=1),
            )
            for pk, is_won, salesforce_id, close_date in ScopingIssue.objects.filter(
                opportunity__is_closed=True
            ).values_list(
                "pk", "opportunity__is_won", "opportunity__salesforce_id", "opportunity__close_date"
            )
        ),
        batch_size=5000,
    )
    lost = list(
        ScopingIssue.objects.filter(stage=Stage.CLOSED_LOST).values_list("pk", flat=True)[: issues // 30]
    )
    RuleAction.objects.bulk_create(
        RuleAction(
            issue_id=pk,
            rule=RuleAction.Rule.STALE,
            reason=(today - timedelta(days=index % 200)).isoformat(),
            close_qtr=quarter_code(today - timedelta(days=index % 200)),
            applied_at=now - timedelta(days=index % 200),
        )
        for index, pk in enumerate(lost)
    )
    kinds = list(ProblemKind)
    sample = ScopingIssue.objects.order_by("?").values_list("pk", flat=True)[: issues // 50]
    DataQualityProblem.objects.bulk_create(
        DataQualityProblem(issue_id=pk, kind=kinds[index % len(kinds)], message="bench", labels=["x"])
        for index, pk in enumerate(sample)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- The reports, as the pages compute them --------------------------------------------------------


def reports() -> dict[str, Callable[[], Any]]:
    """Every figure and row each page shows, from the report code the views call."""
    from django.utils import timezone

    from opportunities.models import Opportunity
    from psplan.fiscal import FiscalQuarter
    from reporting import deals, quality, selectors, stale
    from scoping.models import ScopingIssue

    current = FiscalQuarter.current()

    def win_rate():
        return selectors.win_rate_window(issues=ScopingIssue.objects.current(), through=current)

    def forecast():
        opportunities = Opportunity.objects.all()
        report = selectors.forecast_report(opportunities=opportunities, current=current)
        return report, list(selectors.closing_in(opportunities=opportunities, quarter=current)[:ROWS_SHOWN])

    def slipped_deals():
        chosen = {"opportunities": Opportunity.objects.all(), "quarter": current}
        return deals.slipped(**chosen, limit=ROWS_SHOWN)

    def calibration():
        quarters = current.previous().ending_series(deals.CALIBRATION_QUARTERS)
        return deals.calibration(opportunities=Opportunity.objects.all(), quarters=quarters)

    def stale_issues():
        now = timezone.now()
        return (
            stale.going_stale(as_of=now),
            list(stale.closed_as_stale(quarter=current)[:ROWS_SHOWN]),
            stale.overrides(as_of=now, limit=ROWS_SHOWN),
            stale.counts(as_of=now, quarter=current),
        )

    def data_quality():
        today = timezone.localdate()
        counts = quality.check_counts(today=today)
        return counts, [
            list(check.rows(today)[:ROWS_SHOWN]) for check in quality.CHECKS if counts[check.slug]
        ]

    return {
        "win_rate": win_rate,
        "forecast": forecast,
        "slipped_deals": slipped_deals,
        "calibration": calibration,
        "stale": stale_issues,
        "data_quality": data_quality,
    }


# --- The same figures in hand-written SQL ----------------------------------------------------------

ISSUES = "scoping_scopingissue"
OPPORTUNITIES = "opportunities_opportunity"
EMS = "opportunities_engagementmanager"
CHANGES = "opportunities_opportunitychange"
PS_AMOUNT = "COALESCE(o.proserv_amount, o.ps_value, o.amount)"
LEVEL = "COALESCE(NULLIF(o.em_confidence, ''), 'Grey')"
WON_LOST = "COUNT(*) FILTER (WHERE i.stage = 'Closed_Won'), COUNT(*) FILTER (WHERE i.stage = 'Closed_Lost')"
DECIDED = "i.removed_at IS NULL AND i.stage IN ('Closed_Won', 'Closed_Lost') AND i.close_qtr = ANY(%(codes)s)"
MONEY = f"COUNT(*), COALESCE(SUM({PS_AMOUNT}), 0)"
WHO = (
    "COALESCE(NULLIF(TRIM(u.first_name || ' ' || u.last_name), ''), u.username, NULLIF(c.actor_name, ''), "
    "CASE c.source WHEN 'salesforce' THEN 'Salesforce' WHEN 'page' THEN 'PS Plan page' WHEN 'api' THEN 'PS Plan API' "
    "WHEN 'admin' THEN 'PS Plan admin' WHEN 'rule' THEN 'Closing rule' WHEN 'gitlab' THEN 'GitLab' ELSE c.source END)"
)


def sql_reports() -> dict[str, list[tuple[str, Callable[[], dict[str, Any]]]]]:
    """For each report, its statements and their parameters."""
    from django.conf import settings
    from django.utils import timezone

    from psplan.fiscal import FiscalQuarter
    from reporting import quality
    from scoping.models import stale_cutoff

    current = FiscalQuarter.current()
    now, today = timezone.now(), timezone.localdate()
    warning = timedelta(days=settings.PSPLAN_STALE_WARNING_DAYS)

    def window():
        return {"codes": [q.code for q in current.ending_series(9)]}

    def quarter(q: FiscalQuarter = current):
        return {
            "code": q.code,
            "start": q.starts_at(),
            "end": q.ends_at(),
            "first": q.first_day().isoformat(),
            "last": q.last_day().isoformat(),
            "first_day": q.first_day(),
            "last_day": q.last_day(),
        }

    def stale_window():
        return {
            "stale_after": f"{settings.PSPLAN_STALE_AFTER_MONTHS} months",
            "cutoff": stale_cutoff(now),
            "soon": stale_cutoff(now + warning),
            "warn_day": timezone.localdate(now + warning),
            "today": today,
            "start": current.starts_at(),
        }

    calibration_quarters = current.previous().ending_series(4)
    cohort = """
        SELECT COALESCE(NULLIF(COALESCE(
                   (SELECT c.old_value FROM {changes} c WHERE c.opportunity_id = o.id AND c.field = 'EMConfidence'
                    AND c.changed_at >= %(start_{n})s ORDER BY c.changed_at, c.id LIMIT 1),
                   o.em_confidence), ''), 'Grey'),
               o.engagement_manager_id, e.name, '{code}',
               COUNT(*) FILTER (WHERE o.is_won AND o.close_date <= %(last_{n})s),
               COUNT(*) FILTER (WHERE o.is_won AND o.close_date > %(last_{n})s),
               COUNT(*) FILTER (WHERE NOT o.is_won)
        FROM {opportunities} o LEFT JOIN {ems} e ON e.id = o.engagement_manager_id
        WHERE o.is_closed AND o.close_date >= %(first_{n})s AND (
            (o.close_date <= %(last_{n})s AND NOT EXISTS (
                SELECT 1 FROM {changes} c WHERE c.opportunity_id = o.id AND c.field = 'CloseDate'
                AND c.changed_at >= %(start_{n})s))
            OR EXISTS (
                SELECT 1 FROM {changes} c WHERE c.opportunity_id = o.id AND c.field = 'CloseDate'
                AND c.changed_at >= %(start_{n})s AND c.old_value BETWEEN %(first_text_{n})s AND %(last_text_{n})s
                AND NOT EXISTS (
                    SELECT 1 FROM {changes} p WHERE p.opportunity_id = c.opportunity_id AND p.field = 'CloseDate'
                    AND p.changed_at >= %(start_{n})s
                    AND (p.changed_at < c.changed_at OR (p.changed_at = c.changed_at AND p.id < c.id)))))
        GROUP BY 1, 2, 3"""
    calibration_sql = " UNION ALL ".join(
        cohort.format(code=q.code, n=n, opportunities=OPPORTUNITIES, changes=CHANGES, ems=EMS)
        for n, q in enumerate(calibration_quarters)
    )

    def calibration_params():
        params = {}
        for n, q in enumerate(calibration_quarters):
            params |= {
                f"start_{n}": q.starts_at(),
                f"first_{n}": q.first_day(),
                f"last_{n}": q.last_day(),
                f"first_text_{n}": q.first_day().isoformat(),
                f"last_text_{n}": q.last_day().isoformat(),
            }
        return params

    opportunity_checks = f"""
        SELECT COUNT(*) FILTER (WHERE o.engagement_manager_id IS NULL),
               COUNT(*) FILTER (WHERE o.em_confidence IN ('Red', 'Amber') AND TRIM(o.em_confidence_rationale) = ''),
               COUNT(*) FILTER (WHERE o.em_confidence IN ('Grey', '') AND o.close_date <= %(soon)s)
        FROM {OPPORTUNITIES} o WHERE NOT o.is_closed"""
    opportunity_rows = f"""
        SELECT o.salesforce_id, o.name, o.close_date, o.close_quarter, o.stage_name, o.owner_name,
               o.em_confidence_rationale, a.name, e.name, e.gitlab_username, {LEVEL}, {PS_AMOUNT}
        FROM {OPPORTUNITIES} o LEFT JOIN opportunities_account a ON a.id = o.account_id
        LEFT JOIN {EMS} e ON e.id = o.engagement_manager_id
        WHERE NOT o.is_closed AND {{where}} ORDER BY o.close_date, o.salesforce_id LIMIT 25"""
    issue_rows = f"""
        SELECT i.iid, i.title, i.stage, i.state, i.segment, i.close_qtr, i.last_activity_at, i.labels, e.name
        FROM {ISSUES} i LEFT JOIN {EMS} e ON e.id = i.engagement_manager_id
        WHERE i.removed_at IS NULL AND {{where}} ORDER BY i.iid DESC LIMIT 25"""
    problem_rows = f"""
        SELECT p.kind, p.labels, p.message, i.iid, i.title, o.salesforce_id, o.name
        FROM scoping_dataqualityproblem p LEFT JOIN {ISSUES} i ON i.id = p.issue_id
        LEFT JOIN {OPPORTUNITIES} o ON o.id = p.opportunity_id
        WHERE p.kind = ANY(%(kinds_{{n}})s) ORDER BY p.kind, i.iid DESC, p.id LIMIT 25"""
    # Which problem kinds each check counts is the checks' definition, so it is taken from them.
    named = {str(n): list(kinds) for n, kinds in enumerate(quality.NAMED_PROBLEMS.values())}
    other = list(quality.OTHER_PROBLEMS)

    def quality_params():
        return {
            "soon": today + timedelta(days=30),
            **{f"kinds_{n}": kinds for n, kinds in named.items()},
            "kinds_3": other,
        }

    return {
        "win_rate": [
            (f"SELECT i.close_qtr, {WON_LOST} FROM {ISSUES} i WHERE {DECIDED} GROUP BY 1", window),
            (
                f"SELECT i.close_qtr, i.engagement_manager_id, e.name, e.gitlab_username, {WON_LOST} FROM {ISSUES} i "
                f"LEFT JOIN {EMS} e ON e.id = i.engagement_manager_id WHERE {DECIDED} GROUP BY 1, 2, 3, 4",
                window,
            ),
            (
                f"SELECT i.close_qtr, i.segment, {WON_LOST} FROM {ISSUES} i WHERE {DECIDED} GROUP BY 1, 2",
                window,
            ),
        ],
        "forecast": [
            (
                f"SELECT o.close_quarter, {LEVEL}, {MONEY} FROM {OPPORTUNITIES} o WHERE NOT o.is_closed GROUP BY 1, 2",
                dict,
            ),
            (
                f"SELECT o.engagement_manager_id, e.gitlab_username, e.name, {LEVEL}, {MONEY} FROM {OPPORTUNITIES} o "
                f"LEFT JOIN {EMS} e ON e.id = o.engagement_manager_id WHERE NOT o.is_closed GROUP BY 1, 2, 3, 4",
                dict,
            ),
            (
                f"SELECT o.engagement_manager_id, e.gitlab_username, e.name, o.forecast_category, {MONEY} "
                f"FROM {OPPORTUNITIES} o LEFT JOIN {EMS} e ON e.id = o.engagement_manager_id "
                "WHERE NOT o.is_closed GROUP BY 1, 2, 3, 4",
                dict,
            ),
            (
                f"SELECT o.forecast_category, {LEVEL}, {MONEY} FROM {OPPORTUNITIES} o WHERE NOT o.is_closed GROUP BY 1, 2",
                dict,
            ),
            (
                f"SELECT o.salesforce_id, o.name, o.close_date, o.close_quarter, o.stage_name, o.forecast_category, "
                f"o.em_confidence_rationale, a.name, e.name, {LEVEL}, {PS_AMOUNT} FROM {OPPORTUNITIES} o "
                f"LEFT JOIN opportunities_account a ON a.id = o.account_id LEFT JOIN {EMS} e ON e.id = o.engagement_manager_id "
                "WHERE NOT o.is_closed AND o.close_quarter = %(code)s ORDER BY CASE "
                f"{LEVEL} WHEN 'Green' THEN 0 WHEN 'Amber' THEN 1 WHEN 'Red' THEN 2 WHEN 'Grey' THEN 3 ELSE 4 END, "
                f"{PS_AMOUNT} DESC NULLS LAST, o.close_date, o.salesforce_id LIMIT 100",
                quarter,
            ),
        ],
        "slipped_deals": [
            (
                # Each deal once with its latest move out; the totals over all of them before the limit.
                f"""SELECT latest.*, COUNT(*) OVER (), SUM(latest.ps_amount) OVER () FROM (
                    SELECT DISTINCT ON (c.opportunity_id) o.salesforce_id, o.name, a.name AS account, e.name AS em, c.old_value,
                           c.new_value, c.changed_at, o.close_date, o.close_quarter, o.stage_name, o.is_closed,
                           o.is_won, {PS_AMOUNT} AS ps_amount, c.id, {WHO}
                    FROM {CHANGES} c JOIN {OPPORTUNITIES} o ON o.id = c.opportunity_id
                    LEFT JOIN auth_user u ON u.id = c.actor_id
                    LEFT JOIN opportunities_account a ON a.id = o.account_id
                    LEFT JOIN {EMS} e ON e.id = o.engagement_manager_id
                    WHERE c.field = 'CloseDate' AND c.changed_at >= %(start)s AND c.changed_at < %(end)s
                      AND c.old_value BETWEEN %(first)s AND %(last)s AND c.new_value > %(last)s
                    ORDER BY c.opportunity_id, c.changed_at DESC, c.id DESC
                ) latest ORDER BY changed_at DESC, salesforce_id LIMIT 100""",
                quarter,
            ),
        ],
        "calibration": [(calibration_sql, calibration_params)],
        "stale": [
            (
                f"""SELECT i.iid, i.title, e.name, i.last_activity_at, i.last_activity_at + %(stale_after)s
                FROM {ISSUES} i
                LEFT JOIN {EMS} e ON e.id = i.engagement_manager_id
                LEFT JOIN {OPPORTUNITIES} o ON o.id = i.opportunity_id
                WHERE i.removed_at IS NULL AND i.state = 'opened' AND i.last_activity_at >= %(cutoff)s
                  AND i.last_activity_at < %(soon)s AND NOT COALESCE(i.keep_open_until >= %(warn_day)s, false)
                  AND NOT COALESCE(o.is_closed, false)
                ORDER BY i.last_activity_at, i.iid""",
                stale_window,
            ),
            (
                f"""SELECT i.iid, i.title, e.name, r.reason, r.close_qtr, r.applied_at, i.state, i.stage
                FROM scoping_ruleaction r JOIN {ISSUES} i ON i.id = r.issue_id
                LEFT JOIN {EMS} e ON e.id = i.engagement_manager_id
                WHERE r.rule = 'stale' AND r.applied_at >= %(start)s ORDER BY r.applied_at DESC, r.id DESC LIMIT 100""",
                stale_window,
            ),
            (
                f"""SELECT i.iid, i.title, i.last_activity_at, i.keep_open_until, e.name, i.keep_open_set_at,
                       COALESCE(u.first_name || ' ' || u.last_name, u.username), u.username,
                       i.keep_open_reason,
                       i.last_activity_at < %(cutoff)s
                FROM {ISSUES} i LEFT JOIN {EMS} e ON e.id = i.engagement_manager_id
                LEFT JOIN auth_user u ON u.id = i.keep_open_set_by_id
                WHERE i.removed_at IS NULL AND i.state = 'opened' AND i.keep_open_until >= %(today)s
                ORDER BY i.keep_open_until, i.iid LIMIT 100""",
                stale_window,
            ),
            (
                f"SELECT COUNT(*) FROM {ISSUES} i WHERE i.removed_at IS NULL AND i.state = 'opened' "
                "AND i.keep_open_until >= %(today)s",
                stale_window,
            ),
            (
                "SELECT COUNT(*) FROM scoping_ruleaction r WHERE r.rule = 'stale' AND r.applied_at >= %(start)s",
                stale_window,
            ),
        ],
        "data_quality": [
            (opportunity_checks, quality_params),
            (
                f"SELECT COUNT(*) FILTER (WHERE i.state = 'opened' AND i.engagement_manager_id IS NULL), "
                f"COUNT(*) FILTER (WHERE i.stage IN ('Closed_Won', 'Closed_Lost') AND i.close_qtr = '') "
                f"FROM {ISSUES} i WHERE i.removed_at IS NULL",
                dict,
            ),
            (
                "SELECT COUNT(*) FILTER (WHERE kind = ANY(%(kinds_0)s)), COUNT(*) FILTER (WHERE kind = ANY(%(kinds_1)s)), "
                "COUNT(*) FILTER (WHERE kind = ANY(%(kinds_2)s)), COUNT(*) FILTER (WHERE kind = ANY(%(kinds_3)s)) "
                "FROM scoping_dataqualityproblem",
                quality_params,
            ),
            (f"SELECT COUNT(*) FROM {EMS} WHERE active AND gitlab_username = ''", dict),
            (opportunity_rows.format(where="o.engagement_manager_id IS NULL"), dict),
            (issue_rows.format(where="i.state = 'opened' AND i.engagement_manager_id IS NULL"), dict),
            (
                opportunity_rows.format(
                    where="o.em_confidence IN ('Red', 'Amber') AND TRIM(o.em_confidence_rationale) = ''"
                ),
                dict,
            ),
            (
                opportunity_rows.format(where="o.em_confidence IN ('Grey', '') AND o.close_date <= %(soon)s"),
                quality_params,
            ),
            (issue_rows.format(where="i.stage IN ('Closed_Won', 'Closed_Lost') AND i.close_qtr = ''"), dict),
            *((problem_rows.format(n=n), quality_params) for n in ("0", "1", "2")),
            (
                f"SELECT id, name, email FROM {EMS} WHERE active AND gitlab_username = '' ORDER BY name, id LIMIT 25",
                dict,
            ),
            (problem_rows.format(n="3"), quality_params),
        ],
    }


def run_sql(statements: list[tuple[str, Callable[[], dict[str, Any]]]]) -> list[list[tuple]]:
    from django.db import connection

    results = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params())
            results.append(cursor.fetchall())
    return results


# --- Checking that both compute the same figures ----------------------------------------------------


def agree(name: str, report: Any, sql: list[list[tuple]]) -> None:
    """The headline figures of each report equal the bare SQL's, so the timings compare like with like."""
    checks: dict[str, Callable[[], tuple[Any, Any]]] = {
        "win_rate": lambda: (
            (report.total.won, report.total.lost),
            (sum(row[1] for row in sql[0]), sum(row[2] for row in sql[0])),
        ),
        "forecast": lambda: (
            (report[0].by_quarter.total.count, report[0].by_quarter.total.amount, len(report[1])),
            (sum(row[2] for row in sql[0]), sum(row[3] for row in sql[0]), len(sql[4])),
        ),
        "slipped_deals": lambda: (
            (report.count, report.amount, [(r["salesforce_id"], r["changed_by"]) for r in report.deals]),
            (sql[0][0][15], sql[0][0][16], [(row[0], row[14]) for row in sql[0]]),
        ),
        "calibration": lambda: (
            sorted((o.confidence, o.counts) for o in report.overall if o.total),
            sorted(_calibration_totals(sql[0]).items()),
        ),
        "stale": lambda: (
            (
                [(row["iid"], row["goes_stale_at"]) for row in report[0]],
                [row["iid"] for row in report[1]],
                report[3],
            ),
            (
                [(row[0], row[4]) for row in sql[0]],
                [row[0] for row in sql[1]],
                {"overrides": sql[3][0][0], "closed_as_stale": sql[4][0][0]},
            ),
        ),
        "data_quality": lambda: (
            sorted(count for count in report[0].values()),
            sorted([*sql[0][0], *sql[1][0], *sql[2][0], sql[3][0][0]]),
        ),
    }
    ours, theirs = checks[name]()
    if ours != theirs:
        raise SystemExit(f"{name}: the report and the bare SQL disagree:\n  {ours}\n  {theirs}")


def _calibration_totals(rows: list[tuple]) -> dict[str, tuple[int, int, int]]:
    totals: dict[str, tuple[int, int, int]] = {}
    for confidence, *_, won_in, won_later, lost in rows:
        before = totals.get(confidence, (0, 0, 0))
        totals[confidence] = (before[0] + won_in, before[1] + won_later, before[2] + lost)
    return totals


# --- Measuring -------------------------------------------------------------------------------------


def seconds(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, Any]:
    from django.conf import settings
    from django.test.utils import override_settings

    # Production pages name their CSS through collectstatic's manifest, which a benchmark's checkout lacks.
    plain_static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain_static}):
        return _measure(rounds)


def _page(client, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}")


def _measure(rounds: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from scoping import rules

    figures: dict[str, Any] = {}
    ours, bare = reports(), sql_reports()
    client = Client()
    client.force_login(get_user_model().objects.create(username="leader"))
    pages = {
        "win_rate": "win-rate",
        "forecast": "forecast",
        "slipped_deals": "slipped-deals",
        "calibration": "calibration",
        "stale": "stale",
        "data_quality": "data-quality",
    }
    for name, report in ours.items():
        agree(name, report(), run_sql(bare[name]))
        times: dict[str, list[float]] = {"report": [], "sql": [], "page": []}
        # Interleaved, so a busy moment on the machine hits each alike; a fast report gets more rounds
        # (about two seconds' worth), so that its fastest run is not just luck.
        while len(times["sql"]) < rounds or (sum(times["sql"]) < 2 and len(times["sql"]) < 200):
            times["report"].append(seconds(report))
            times["sql"].append(seconds(lambda name=name: run_sql(bare[name])))
            times["page"].append(seconds(lambda name=name: _page(client, f"/reports/{pages[name]}/")))
        # The fastest run of each: other work on a shared machine can only slow a run down.
        report_s, sql_s, page_s = (min(times[kind]) for kind in ("report", "sql", "page"))
        figures[f"report_{name}_ms"] = f"{report_s * 1000:.1f}"
        figures[f"report_{name}_sql_ms"] = f"{sql_s * 1000:.1f}"
        figures[f"report_{name}_page_ms"] = f"{page_s * 1000:.1f}"
        figures[f"report_{name}_vs_sql_ratio"] = report_s / sql_s
        print(
            f"  {name}: report {report_s * 1000:.1f} ms, SQL {sql_s * 1000:.1f} ms, page {page_s * 1000:.1f} ms"
            f" (fastest of {len(times['sql'])})",
            flush=True,
        )
    preview_s = seconds(lambda: rules.apply_rules(as_of=timezone.now(), dry_run=True))
    figures["report_stale_preview_ms"] = f"{preview_s * 1000:.0f}"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if "DATABASE_URL" in os.environ:
        figures = _run(args, os.environ["DATABASE_URL"])
    else:
        print("Starting a throwaway PostgreSQL on 127.0.0.1", flush=True)
        with throwaway_postgres() as url:
            figures = _run(args, url)
    ratios = [value for name, value in figures.items() if name.endswith("_vs_sql_ratio")]
    print(f"issues: {args.issues}")
    for name, value in figures.items():
        if not name.endswith("_vs_sql_ratio"):
            print(f"{name}: {value}")
    for name, value in figures.items():
        if name.endswith("_vs_sql_ratio"):
            print(f"{name}: {value:.2f}")
    print(f"report_worst_vs_sql_ratio: {max(ratios):.2f}")


def _run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    environ = {"DATABASE_URL": database_url, "DJANGO_ALLOWED_HOSTS": "testserver"}
    unset = ("GITLAB_TOKEN", "SALESFORCE_INSTANCE_URL", "SALESFORCE_USERNAME")
    with django_on_throwaway_database(environ, unset=unset) as vendor:
        if vendor != "postgresql":
            raise SystemExit(f"bench/reports.py measures on PostgreSQL; DATABASE_URL points at {vendor}")
        started = time.perf_counter()
        fill(args.issues, random.Random(1))
        print(
            f"Filled {args.issues} closed issues and their opportunities in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        return measure(args.rounds)


if __name__ == "__main__":
    main()
