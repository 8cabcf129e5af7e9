"""The EM pages on PostgreSQL with 20,000 issues (2,000 open): server time against a plain page, queries, size.

    uv run python bench/pages.py [--rounds 41]

Starts a throwaway PostgreSQL on 127.0.0.1 (as bin/test does) unless DATABASE_URL is set, and builds a
test database beside it. For the all-EMs board, one EM's board, triage, "My work" and the issue page:

- counts the page's queries with 1 issue and with 2,000 (open) issues;
- at 20,000 issues (2,000 open), takes the median server time of the page through Django's whole stack
  (test client, middleware, signed-in EM) and, in alternating rounds, of a plain view that renders the
  same rows from one values() query with a plain template; their ratio is page_<name>_render_ratio;
- measures the page's HTML.

Ends by printing `name: value` lines: page_<name>_render_ratio, page_<name>_queries_at_1,
page_<name>_queries_at_2000, page_<name>_html_kb, and page_worst_render_ratio. Bounded: a fixed number
of requests, all in-process; the database listens on loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throwaway_django import django_on_throwaway_database

ENGAGEMENT_MANAGERS = 60
OPPORTUNITIES = 2_000
OPEN_ISSUES = 2_000
ALL_ISSUES = 20_000
SUBJECT_HISTORY = 40
PAGES = {
    "all_ems_board": "/boards/?engagement_manager=all",
    "em_board": "/boards/",
    "triage": "/triage/",
    "my_work": "/my-work/",
    "issue": "/issues/{iid}/",
}


# --- A throwaway PostgreSQL on loopback, as bin/test starts one ------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgresql() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on 127.0.0.1; yields its DATABASE_URL."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql, or set DATABASE_URL")
    pg_bin, folder, port = versions[-1], Path(tempfile.mkdtemp(prefix="psplan-bench-pg-")), _free_port()
    data = folder / "data"
    data.mkdir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    quiet = {"check": True, "stdout": subprocess.DEVNULL}
    subprocess.run(
        [*as_postgres, pg_bin / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"], **quiet
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off"
    subprocess.run(
        [*as_postgres, pg_bin / "pg_ctl", "-D", data, "-l", folder / "pg.log", "-w", "start", "-o", options],
        **quiet,
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/psplan"
    finally:
        subprocess.run(
            [*as_postgres, pg_bin / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


# --- Data --------------------------------------------------------------------------------------------


def fill_people_and_opportunities():
    """60 EMs (the first one signs in), their territories and accounts, 2,000 open opportunities."""
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from opportunities.choices import AssignmentRole, EMConfidence, Segment
    from opportunities.models import Account, EngagementManager, Opportunity, Territory, TerritoryAssignment
    from psplan.fiscal import quarter_code
    from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP

    user = get_user_model().objects.create_user("em", "em@example.com", "bench-only")
    user.groups.add(Group.objects.create(name=ENGAGEMENT_MANAGERS_GROUP))
    segments, confidences = list(Segment), list(EMConfidence)
    ems = EngagementManager.objects.bulk_create(
        EngagementManager(
            name=f"Engagement Manager {n:02d}",
            email=f"em{n}@example.com",
            salesforce_user_id=f"005{n:012d}AAA",
            gitlab_username=f"em{n}",
            gitlab_user_id=5000 + n,
            user=user if n == 0 else None,
        )
        for n in range(ENGAGEMENT_MANAGERS)
    )
    territories = Territory.objects.bulk_create(
        Territory(name=f"Territory {n:02d}", segment=segments[n % len(segments)])
        for n in range(ENGAGEMENT_MANAGERS)
    )
    TerritoryAssignment.objects.bulk_create(
        [
            TerritoryAssignment(territory=t, engagement_manager=ems[n], role=AssignmentRole.PRIMARY)
            for n, t in enumerate(territories)
        ]
        + [
            TerritoryAssignment(
                territory=t, engagement_manager=ems[(n + 1) % len(ems)], role=AssignmentRole.BACKUP
            )
            for n, t in enumerate(territories)
        ]
    )
    accounts = Account.objects.bulk_create(
        Account(salesforce_id=f"001{n:012d}AAA", name=f"Customer {n}", sales_territory=t.name, territory=t)
        for n, t in enumerate(territories * 10)
    )
    today = timezone.localdate()
    Opportunity.objects.bulk_create(
        Opportunity(
            salesforce_id=f"006{n:012d}AAA",
            name=f"Customer {n % len(accounts)} - Deal {n}",
            account=accounts[n % len(accounts)],
            close_date=today + timedelta(days=n % 90),
            close_quarter=quarter_code(today + timedelta(days=n % 90)),
            amount=Decimal(100_000 + n),
            proserv_amount=Decimal(20_000 + n),
            engagement_manager=ems[n % len(ems)],
            em_confidence=confidences[n % len(confidences)],
        )
        for n in range(OPPORTUNITIES)
    )


def add_issues(count: int, *, first: int, closed: bool) -> None:
    """`count` issues with labels and derived columns that agree; open ones are 10% untriaged."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from opportunities.models import EngagementManager, Opportunity
    from scoping.choices import IssueState, Stage
    from scoping.labels import em_status_label, segment_label, workflow_label
    from scoping.models import ScopingIssue
    from scoping.services import derived_label_fields

    ems = list(EngagementManager.objects.order_by("pk"))
    opportunities = list(Opportunity.objects.order_by("pk").select_related("account__territory"))
    now = timezone.now()
    open_stages = [s for s in Stage if s not in Stage.closing()]
    closed_stages = [Stage.CLOSED_WON, Stage.CLOSED_LOST, Stage.CLOSED]
    rows = []
    for n in range(first, first + count):
        opportunity = opportunities[n % len(opportunities)]
        untriaged = not closed and n % 10 == 0
        stage = (closed_stages if closed else open_stages)[n % 8 % (3 if closed else 8)]
        labels = [settings.GITLAB_SCOPING_LABEL, *filter(None, [workflow_label(stage)])]
        if not untriaged:
            labels.append(segment_label(opportunity.account.territory.segment))
        if n % 3 == 0:
            labels.append(em_status_label(["Waiting", "ToDo"][n % 2]))
        state = IssueState.CLOSED if closed else IssueState.OPENED
        active = now - timedelta(days=n % 75, hours=n % 24)
        rows.append(
            ScopingIssue(
                gitlab_id=900_000 + n,
                iid=n + 1,
                title=f"Scoping: {opportunity.name}",
                description=f"Estimate for {opportunity.name}.\nOpportunity {opportunity.salesforce_id}",
                web_url=f"{settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues/{n + 1}",
                state=state,
                labels=labels,
                created_at=active - timedelta(days=3),
                updated_at=active,
                last_activity_at=active,
                closed_at=now - timedelta(days=n % 720) if closed else None,
                engagement_manager=None if untriaged and n % 20 == 10 else ems[n % len(ems)],
                opportunity=opportunity,
                **derived_label_fields(labels=labels, state=state),
            )
        )
    ScopingIssue.objects.bulk_create(rows, batch_size=2_000)


def add_history(iid: int) -> None:
    """The subject of the issue page gets moves, an override and a failed write, as a busy issue has."""
    from datetime import date, timedelta

    from django.contrib.auth import get_user_model

    from psplan.queue import WriteStatus
    from scoping.choices import Stage
    from scoping.models import GitLabWrite, ScopingIssue
    from scoping.services import set_issue_stage, set_keep_open

    issue, user = ScopingIssue.objects.get(iid=iid), get_user_model().objects.get(username="em")
    stages = [Stage.AWAITING_DISCOVERY, Stage.STRAWMAN_WIP, Stage.SOW_WIP, Stage.ON_HOLD]
    for n in range(SUBJECT_HISTORY):
        set_issue_stage(issue=issue, stage=stages[n % len(stages)], actor=user)
    set_keep_open(issue=issue, until=date.today() + timedelta(days=30), actor=user, reason="Budget cycle")
    GitLabWrite.objects.filter(issue=issue).update(status=WriteStatus.DELIVERED)
    GitLabWrite.objects.filter(pk=GitLabWrite.objects.filter(issue=issue).latest("id").pk).update(
        status=WriteStatus.FAILED, last_error="403 Forbidden"
    )


# --- The plain baseline: the same rows, one values() query, a plain template (bench/pages_urls.py) --

ISSUE_FIELDS = (
    "iid",
    "title",
    "stage",
    "segment",
    "em_status",
    "last_activity_at",
    "engagement_manager__name",
    "opportunity__account__name",
    "opportunity__proserv_amount",
    "opportunity__em_confidence",
)


def shown_rows(name: str, response):
    """The rows the page showed, as one values() query for the plain view."""
    from scoping.models import IssueChange, ScopingIssue

    context = response.context
    if name == "issue":
        issue = context["issue"]
        return lambda: IssueChange.objects.filter(issue=issue).values(
            "changed_at", "field", "old_value", "new_value", "write__status", "issue__iid", "issue__title"
        )
    if name == "all_ems_board":
        iids = [card.iid for lane in context["lanes"] for column in lane.columns for card in column.cards]
    elif name == "em_board":
        iids = [card.iid for column in context["columns"] for card in column.cards]
    elif name == "triage":
        iids = [row.issue.iid for row in context["rows"]]
    else:
        work = context["work"]
        iids = [item.iid for item in (*work.untriaged, *work.going_stale, *work.to_do)]
    return lambda: ScopingIssue.objects.filter(iid__in=iids).values(*ISSUE_FIELDS)


# --- Measuring ---------------------------------------------------------------------------------------


def query_counts(client, subject_iid: int) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for name, path in PAGES.items():
        client.get(path.format(iid=subject_iid))  # warm caches (content types, sessions)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path.format(iid=subject_iid))
        assert response.status_code == 200, (name, response.status_code)
        counts[name] = len(queries)
    return counts


def with_context(client, url: str):
    """A response carrying its template context (instrumented only for this request, not the timed ones)."""
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    try:
        return client.get(url)
    finally:
        teardown_test_environment()


def timings(client, subject_iid: int, rounds: int) -> dict[str, tuple[float, float, int]]:
    """Page → (median page seconds, median plain seconds, HTML bytes), in alternating rounds."""
    from bench.pages_urls import PLAIN_ROWS

    results = {}
    for name, path in PAGES.items():
        url = path.format(iid=subject_iid)
        response = with_context(client, url)
        PLAIN_ROWS[name] = shown_rows(name, response)  # served by bench/pages_urls.py's plain view
        page, plain = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            client.get(url)
            page.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.get(f"/bench/plain/{name}/")
            plain.append(time.perf_counter() - started)
        results[name] = (statistics.median(page), statistics.median(plain), len(response.content))
    return results


def run(rounds: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    fill_people_and_opportunities()
    add_issues(1, first=0, closed=False)
    add_history(1)
    plain_storage = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(
        ROOT_URLCONF="bench.pages_urls",
        ALLOWED_HOSTS=["testserver"],
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": plain_storage,
        },
    ):
        client = Client()
        client.force_login(get_user_model().objects.get(username="em"))
        at_1 = query_counts(client, 1)
        add_issues(OPEN_ISSUES - 1, first=1, closed=False)
        at_2000 = query_counts(client, 1)
        add_issues(ALL_ISSUES - OPEN_ISSUES, first=OPEN_ISSUES, closed=True)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        measured = timings(client, 1, rounds)
    ratios = {}
    for name in PAGES:
        page, plain, size = measured[name]
        ratios[name] = page / plain
        print(f"page_{name}_ms: {page * 1000:.1f}")
        print(f"page_{name}_plain_ms: {plain * 1000:.1f}")
        print(f"page_{name}_render_ratio: {ratios[name]:.2f}")
        print(f"page_{name}_queries_at_1: {at_1[name]}")
        print(f"page_{name}_queries_at_2000: {at_2000[name]}")
        print(f"page_{name}_html_kb: {size / 1024:.0f}")
    print(f"page_worst_render_ratio: {max(ratios.values()):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # With 15 rounds, runs of the same code on a shared 2-core machine gave a page's ratio 0.2 apart.
    parser.add_argument("--rounds", type=int, default=41)
    rounds = parser.parse_args().rounds
    environ = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "benchmark-only-not-a-secret-" + "x" * 40}
    with contextlib.ExitStack() as stack:
        if "DATABASE_URL" not in os.environ:
            environ["DATABASE_URL"] = stack.enter_context(throwaway_postgresql())
        stack.enter_context(
            django_on_throwaway_database(environ, unset=("GITLAB_TOKEN", "SALESFORCE_INSTANCE_URL"))
        )
        run(rounds)


if __name__ == "__main__":
    main()
