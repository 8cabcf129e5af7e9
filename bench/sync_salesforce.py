"""Benchmark the Salesforce sync against the local HTTPS stand-in (127.0.0.1 only).

    uv run python bench/sync_salesforce.py [--opportunities 20000] [--changes 100] [--edits 500]

Uses a fresh database: a temporary SQLite file, or, when DATABASE_URL is set, a throwaway
test database created next to it (and dropped afterwards). Prints the figures, ending with:

    salesforce_full_sync_request_ratio: query requests of a full pull / ⌈N/2000⌉
    salesforce_incremental_requests: requests of an incremental sync after --changes edits
    salesforce_writeback_requests: requests to deliver --edits PS-field edits (writes + read-back)
    salesforce_nochange_writes: writes to Salesforce, GitLab (outbox) and mirrored rows by a no-change sync
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_django import django_on_throwaway_database  # noqa: E402
from tests.standins.salesforce import SalesforceStandIn  # noqa: E402

TERRITORIES = ["AMER - SMB", "EMEA - Enterprise - DACH", "APAC - Mid-Market", "AMER - Enterprise - East"]
SEGMENTS = ["SMB", "Ent_EMEA", "MM_APAC", "Ent_EAST"]
STAGES = ["Prospecting", "Discovery", "Negotiation", "Closed Won", "Closed Lost"]


def seed_salesforce(
    standin: SalesforceStandIn, count: int, referenced_only: int, rng: random.Random
) -> list[str]:
    """`count` opportunities with SystemModstamps spread over the past year; the last ones have no EM."""
    ems = [standin.add_user(f"EM {n}", f"em{n}@example.com") for n in range(40)]
    accounts = [
        standin.add_account(f"Account {n}", TERRITORIES[n % len(TERRITORIES)] if n % 10 else "Unmapped")
        for n in range(400)
    ]
    start = datetime.now(UTC) - timedelta(days=365)
    ids = []
    for n in range(count):
        eligible = n < count - referenced_only
        ids.append(
            standin.add_opportunity(
                Name=f"Deal {n:05d}",
                AccountId=accounts[n % len(accounts)],
                StageName=rng.choice(STAGES),
                CloseDate=date(2024, 1, 1) + timedelta(days=n % 700),
                Amount=rng.randrange(10_000, 900_000),
                Engagement_Manager__c=ems[n % len(ems)] if eligible else None,
                EM_Confidence__c=rng.choice(["Grey", "Red", "Amber", "Green", None]),
                Scoping_Issue_Link__c=f"https://gitlab.com/g/ps-plan/-/issues/{n + 1}"
                if n % 50 == 0
                else None,
                SystemModstamp=start + timedelta(seconds=n * 1500),
            )
        )
    return ids


def seed_database(standin: SalesforceStandIn, opportunity_ids: list[str], referenced_only: int) -> None:
    """Territories for the accounts, and scoping issues naming opportunities in their descriptions."""
    from django.utils import timezone

    from opportunities.models import Territory
    from scoping.models import ScopingIssue

    Territory.objects.bulk_create(
        Territory(name=name, segment=segment) for name, segment in zip(TERRITORIES, SEGMENTS, strict=True)
    )
    now = timezone.now()
    named = opportunity_ids[-referenced_only:] + opportunity_ids[: 1000 - referenced_only]
    ScopingIssue.objects.bulk_create(
        ScopingIssue(
            gitlab_id=900_000 + iid,
            iid=iid,
            title=f"Scoping {iid}",
            description=f"Opportunity: {standin.instance_url}/lightning/r/Opportunity/{sf_id}/view",
            web_url=f"https://gitlab.com/g/ps-plan/-/issues/{iid}",
            labels=["Services Calculator", "proposal::Strawman_WIP"],
            created_at=now - timedelta(days=20),
            updated_at=now - timedelta(days=3),
            last_activity_at=now - timedelta(days=3),
        )
        for iid, sf_id in enumerate(named, start=1)
    )


class WriteCounter:
    """Counts INSERT/UPDATE/DELETE statements on data tables (SyncRun bookkeeping excluded)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        verb = sql.lstrip().split(" ", 1)[0].upper()
        if verb in {"INSERT", "UPDATE", "DELETE"} and "opportunities_syncrun" not in sql:
            self.count += 1
        return execute(sql, params, many, context)


def timed(label: str, action):
    started = time.perf_counter()
    value = action()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return value


def run(args: argparse.Namespace, standin: SalesforceStandIn, ids: list[str]) -> dict[str, object]:
    from django.db import connection, transaction

    from opportunities.models import Opportunity
    from opportunities.services import update_ps_fields
    from scoping.models import GitLabWrite
    from scoping.opportunity_sync import sync_salesforce
    from scoping.rules import apply_rules

    n = args.opportunities
    seed_database(standin, ids, args.referenced_only)
    standin.reset_requests()
    full = timed("full sync", lambda: sync_salesforce(full=True))
    full_queries = len(standin.query_requests)
    print(f"  full sync: {full.counts['fetched']} opportunities, {full_queries} query requests", flush=True)
    # Seeded closed opportunities close hundreds of issues: the cap spreads them over a few runs.
    timed("rules until settled", lambda: [None for _ in range(100) if apply_rules().cap_hit])

    standin.reset_requests()
    gitlab_before = GitLabWrite.objects.count()
    counter = WriteCounter()
    with connection.execute_wrapper(counter):
        timed("no-change sync + rules", lambda: (sync_salesforce(), apply_rules()))
    nochange = {
        "salesforce": len(standin.write_requests),
        "gitlab": GitLabWrite.objects.count() - gitlab_before,
        "database": counter.count,
    }
    print(f"  no-change sync writes: {nochange}", flush=True)

    rng = random.Random(7)
    for opportunity_id in rng.sample(ids[: n - args.referenced_only], args.changes):
        standin.modify_opportunity(opportunity_id, StageName=rng.choice(STAGES))
    standin.reset_requests()
    incremental = timed("incremental sync", sync_salesforce)
    incremental_requests = len(standin.requests)
    print(
        f"  incremental sync: {incremental.counts.get('updated', 0)} updated of "
        f"{incremental.counts['fetched']} fetched, {incremental_requests} requests",
        flush=True,
    )

    standin.reset_requests()
    edited = list(Opportunity.objects.order_by("salesforce_id")[: args.edits])

    def edit_all() -> None:
        with transaction.atomic():  # on commit the (eager) task delivers them all, in batches
            for opportunity in edited:
                update_ps_fields(
                    opportunity=opportunity,
                    actor=None,
                    em_confidence="Amber",
                    em_confidence_rationale="Benchmark: waiting on procurement",
                )

    timed(f"{args.edits} edits + write-back", edit_all)
    writeback_writes = len(standin.write_requests)
    writeback_requests = len(standin.requests)
    print(
        f"  write-back: {writeback_writes} write requests (composite, If-Unmodified-Since; "
        f"⌈{args.edits}/25⌉ = {math.ceil(args.edits / 25)}) + {writeback_requests - writeback_writes} "
        "read-back queries",
        flush=True,
    )
    standin.reset_requests()
    after = timed("sync after write-back", sync_salesforce)
    print(f"  sync after write-back: {after.counts.get('updated', 0)} opportunities changed", flush=True)
    return {
        "salesforce_full_sync_request_ratio": f"{full_queries / math.ceil(n / 2000):.2f}",
        "salesforce_incremental_requests": incremental_requests,
        "salesforce_writeback_requests": writeback_requests,
        "salesforce_nochange_writes": sum(nochange.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--referenced-only", type=int, default=300, help="named only by issue descriptions")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--edits", type=int, default=500)
    args = parser.parse_args()

    standin = SalesforceStandIn().start()
    try:
        print(f"Salesforce stand-in on {standin.instance_url}", flush=True)
        ids = timed(
            f"seeding {args.opportunities} opportunities",
            lambda: seed_salesforce(standin, args.opportunities, args.referenced_only, random.Random(1)),
        )
        environ = {
            "REQUESTS_CA_BUNDLE": standin.ca_bundle_path,
            "SALESFORCE_INSTANCE_URL": standin.instance_url,
            "SALESFORCE_ACCESS_TOKEN": standin.access_token,
        }
        with django_on_throwaway_database(environ, unset=("GITLAB_TOKEN", "SALESFORCE_USERNAME")):
            figures = run(args, standin, ids)
    finally:
        standin.stop()
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
