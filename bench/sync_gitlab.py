"""Benchmark the GitLab mirror against the local GitLab stand-in (127.0.0.1 only).

    uv run python bench/sync_gitlab.py [--issues 10000] [--changes 50]

Uses a fresh database: a temporary SQLite file, or, when DATABASE_URL is set, a throwaway test
database created next to it (and dropped afterwards). Real python-gitlab over real HTTP. Measures:

- a full sync's requests against the lower bound ⌈N/100⌉ (100 issues a page);
- an incremental sync after --changes issues changed on GitLab;
- what a sync that finds nothing new writes: GitLab write requests plus database rows written
  (the run's own SyncRun record and the sync lock excluded), for an incremental and a full sync
  and a write-back delivery with nothing queued;
- local processing: the full sync's time minus the time spent waiting on GitLab (HTTP, JSON),
  as issues a second; its ingest part (diffing against the stored rows and the bulk upserts) against
  a raw `bulk_create` of the same rows into the same empty table, and, shown beside it, the
  `refresh_issues` that follows (derived columns, links, data-quality problems);
- how fast the webhook answers when it queues to a broker (Celery's in-memory transport).

Ends with these lines:

    gitlab_full_sync_request_ratio: requests of a full sync / ⌈N/100⌉
    gitlab_incremental_requests: requests of an incremental sync after --changes changes
    gitlab_nochange_writes: GitLab write requests + database rows written by no-change syncs
    gitlab_ingest_vs_bulk_create: the full sync's ingest time (diff + bulk upsert) / raw bulk_create time
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_django import django_on_throwaway_database  # noqa: E402
from tests.standins.gitlab import GitLabStandIn  # noqa: E402

TOKEN = "glpat-benchmark"
PROJECT = "ps/ps-plan"
SCOPING = "Services Calculator"
WEBHOOK_SECRET = "benchmark-hook-secret"
STAGES = [
    "Open",
    "proposal::Awaiting_Discovery",
    "proposal::Strawman_WIP",
    "proposal::SOW_WIP",
    "proposal::On_hold",
]
SEGMENTS = ["Segment::Ent_EAST", "Segment::MM_EMEA", "Segment::SMB", "Ent_West", "Segment::Mars", None]
BOOKKEEPING_TABLES = ("opportunities_syncrun", "scoping_synclock")


def seed_gitlab(server: GitLabStandIn, count: int, rng: random.Random) -> None:
    """`count` scoping issues over the past year: stages, segments (variants and unknowns), some closed."""
    for name in (SCOPING, "close_qtr::Q326", "proposal::Closed_Won", "proposal::Closed_Lost"):
        server.add_label(name)
    ems = [server.add_user(f"em{n}")["username"] for n in range(30)]
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / count
    for n in range(count):
        closed = n % 7 == 0
        labels = [SCOPING]
        if closed:
            labels += [rng.choice(["proposal::Closed_Won", "proposal::Closed_Lost"]), "close_qtr::Q326"]
        else:
            labels.append(rng.choice(STAGES))
        if segment := rng.choice(SEGMENTS):
            labels.append(segment)
        when = start + step * n
        server.add_issue(
            title=f"Scoping: customer {n:05d}",
            description=f"Opportunity 006{n:012d}" if n % 3 else "",
            labels=labels,
            assignees=[ems[n % len(ems)]] if n % 4 else [],
            author="seller",
            state="closed" if closed else "opened",
            created_at=when - timedelta(days=3),
            updated_at=when,
        )


class WriteCounter:
    """Counts rows written (INSERT/UPDATE/DELETE) to data tables; bookkeeping tables excluded."""

    def __init__(self) -> None:
        self.rows = 0
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        verb = sql.lstrip().split(" ", 1)[0].upper()
        if verb in {"INSERT", "UPDATE", "DELETE"} and not any(t in sql for t in BOOKKEEPING_TABLES):
            self.rows += max(0, context["cursor"].rowcount)
            self.statements.append(sql[:80])
        return result


class WaitTimer:
    """Wraps the client's issue listing to add up the time spent waiting for the next issue."""

    def __init__(self, client: Any) -> None:
        self.waited = 0.0
        listing = client.iter_issues

        def timed_listing(**options: Any) -> Iterator[Any]:
            issues = listing(**options)
            while True:
                started = time.perf_counter()
                try:
                    issue = next(issues)
                except StopIteration:
                    self.waited += time.perf_counter() - started
                    return
                self.waited += time.perf_counter() - started
                yield issue

        client.iter_issues = timed_listing


class RefreshTimer:
    """Adds up the time the sync spends in scoping.services.refresh_issues."""

    def __init__(self) -> None:
        from scoping import gitlab_sync

        self.spent = 0.0
        self._module, self._original = gitlab_sync, gitlab_sync.refresh_issues

        def timed_refresh(**options: Any) -> int:
            started = time.perf_counter()
            try:
                return self._original(**options)
            finally:
                self.spent += time.perf_counter() - started

        gitlab_sync.refresh_issues = timed_refresh

    def stop(self) -> None:
        self._module.refresh_issues = self._original


def timed(label: str, action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = action()
    took = time.perf_counter() - started
    print(f"  {label}: {took:.2f} s", flush=True)
    return value, took


def raw_bulk_create_time(issues: list[Any]) -> float:
    """Time to bulk_create exactly the rows the sync writes, into the same (empty) table."""
    from django.db import transaction
    from django.utils import timezone

    from scoping.gitlab_sync import BATCH_SIZE, mirror_values
    from scoping.models import ScopingIssue

    now = timezone.now()
    rows = [
        ScopingIssue(gitlab_id=i.id, last_activity_at=i.updated_at, synced_at=now, **mirror_values(i))
        for i in issues
    ]
    started = time.perf_counter()
    with transaction.atomic():
        ScopingIssue.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    took = time.perf_counter() - started
    ScopingIssue.objects.all().delete()
    return took


def webhook_answer_ms(server: GitLabStandIn, rounds: int = 50) -> float:
    """Median time to answer an Issue Hook by storing it and queueing its task to a broker."""
    from django.test import Client

    from psplan.celery import app

    app.conf.update(
        broker_url="memory://localhost/", broker_write_url="memory://localhost/", task_always_eager=False
    )
    client, times = Client(), []
    for n in range(rounds):
        body = json.dumps(server.issue_hook(n + 1, user="em1"))
        headers = {
            "X-Gitlab-Event": "Issue Hook",
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event-UUID": f"u{n}",
        }
        started = time.perf_counter()
        response = client.post("/webhooks/gitlab/", body, content_type="application/json", headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.json() == {"status": "queued"}, response.content
    return statistics.median(times[5:])


def run(args: argparse.Namespace, server: GitLabStandIn) -> dict[str, object]:
    from django.db import connection

    from scoping.gitlab_client import GitLabClient
    from scoping.gitlab_sync import sync_issues
    from scoping.models import DataQualityProblem, ScopingIssue
    from scoping.write_back import deliver_gitlab_writes

    n, k = args.issues, args.changes
    client = GitLabClient.from_settings()
    prefetched, _ = timed(
        "reading every issue once (for the bulk_create baseline)",
        lambda: list(client.iter_issues(label=SCOPING, order_by="created_at")),
    )
    bulk = raw_bulk_create_time(prefetched)
    print(f"  raw bulk_create of {len(prefetched)} rows: {bulk:.2f} s", flush=True)

    timer, refresh = WaitTimer(client), RefreshTimer()
    server.reset_requests()
    full, full_time = timed("full sync", lambda: sync_issues(full=True, client=client))
    refresh.stop()
    full_requests = server.count_requests()
    local = full_time - timer.waited
    ingest = local - refresh.spent
    assert ScopingIssue.objects.count() == n, ScopingIssue.objects.count()
    print(
        f"  full sync: {full.counts['created']} issues, {full_requests} requests (⌈N/100⌉ = "
        f"{math.ceil(n / 100)}); waiting on GitLab {timer.waited:.2f} s; local processing {local:.2f} s "
        f"= {n / local:,.0f} issues/s",
        flush=True,
    )
    print(
        f"    ingest (diff + bulk upsert): {ingest:.2f} s = {n / ingest:,.0f} issues/s = "
        f"{ingest / bulk:.2f}x raw bulk_create",
        flush=True,
    )
    print(
        f"    then refresh_issues (derived columns, EM and opportunity links, "
        f"{DataQualityProblem.objects.count()} data-quality problems): {refresh.spent:.2f} s; "
        f"all local processing = {local / bulk:.2f}x raw bulk_create",
        flush=True,
    )

    counter = WriteCounter()
    server.reset_requests()
    with connection.execute_wrapper(counter):
        quiet_incremental, _ = timed("no-change incremental sync", lambda: sync_issues(client=client))
        quiet_full, _ = timed("no-change full sync", lambda: sync_issues(full=True, client=client))
        deliver_gitlab_writes(client=client)
    gitlab_writes = (
        server.count_requests("PUT") + server.count_requests("POST") + server.count_requests("DELETE")
    )
    print(
        f"  no-change syncs: {server.count_requests()} GitLab requests, {gitlab_writes} of them writes; "
        f"{counter.rows} database rows written; unchanged {quiet_incremental.counts['unchanged']} + "
        f"{quiet_full.counts['unchanged']}",
        flush=True,
    )

    rng = random.Random(5)
    for iid in rng.sample(range(1, n + 1), k):
        server.edit_issue(iid, labels=[SCOPING, "proposal::Estimate_Feedback", "Segment::SMB"])
    server.reset_requests()
    incremental, _ = timed("incremental sync", lambda: sync_issues(client=client))
    incremental_requests = server.count_requests()
    print(
        f"  incremental sync after {k} changes: {incremental.counts['updated']} updated of "
        f"{incremental.counts['fetched']} fetched, {incremental_requests} requests "
        f"(⌈{k}/100⌉ = {math.ceil(k / 100)})",
        flush=True,
    )
    print(f"  webhook answered (stored + queued) in {webhook_answer_ms(server):.1f} ms (median)", flush=True)
    client.close()
    return {
        "gitlab_full_sync_request_ratio": f"{full_requests / math.ceil(n / 100):.2f}",
        "gitlab_incremental_requests": incremental_requests,
        "gitlab_nochange_writes": gitlab_writes + counter.rows,
        "gitlab_ingest_vs_bulk_create": f"{ingest / bulk:.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()

    server = GitLabStandIn(token=TOKEN, project_path=PROJECT).start()
    try:
        print(f"GitLab stand-in on {server.url}", flush=True)
        timed(f"seeding {args.issues} issues", lambda: seed_gitlab(server, args.issues, random.Random(1)))
        environ = {
            "GITLAB_URL": server.url,
            "GITLAB_TOKEN": TOKEN,
            "GITLAB_PROJECT": PROJECT,
            "GITLAB_SCOPING_LABEL": SCOPING,
            "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1",
        }
        unset = ("SALESFORCE_INSTANCE_URL", "SALESFORCE_USERNAME")
        with django_on_throwaway_database(environ, unset=unset) as vendor:
            print(f"Database: {vendor}", flush=True)
            figures = run(args, server)
    finally:
        server.stop()
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
