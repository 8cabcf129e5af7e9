"""Benchmark the write path against stand-in GitLab and Salesforce servers (127.0.0.1 only).

    uv run python bench/write_back.py [--issues 2000] [--closes 500] [--edits 500] [--budget 120]

A GitLab project with --issues scoping issues, 2 x --closes of them idle for more than two months,
and a Salesforce org with --edits opportunities. Real python-gitlab and simple-salesforce over
real HTTP; a fresh database (a temporary SQLite file, or a throwaway test database beside
DATABASE_URL). Two rounds:

1. Clean: the closing rules close --closes issues (each write a label change, a close and a comment)
   and a worker delivers them; --edits PS-field edits made in one transaction are delivered. Every
   request the deliveries send is counted.
2. Faults: GitLab answers 10 % of requests with 429 (Retry-After: 1) and 5 % with 502, Salesforce
   5 % with 503. --edits more PS-field edits wait in the queue; then one `manage.py sync` runs:
   pulls, the rules close the other --closes idle issues, and both queues are delivered within
   --budget seconds. Counted: writes still pending when it returns, and writes applied twice
   (a second comment on an issue, a second update of an opportunity).

Ends with these lines:

    gitlab_requests_per_write: GitLab requests during delivery / writes (each with a comment)
    gitlab_reads_per_100_writes: GitLab GET requests during delivery per 100 writes
    salesforce_requests_per_100_writes: Salesforce requests during delivery per 100 writes
    writes_pending_after_sync_under_faults: writes still pending when the sync under faults returns
    writes_delivered_twice: comments posted twice plus Salesforce updates applied twice, both rounds
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_django import django_on_throwaway_database  # noqa: E402
from tests.standins import salesforce as salesforce_faults  # noqa: E402
from tests.standins.gitlab import GitLabStandIn  # noqa: E402
from tests.standins.salesforce import SalesforceStandIn  # noqa: E402

TOKEN = "glpat-benchmark"
PROJECT = "ps/ps-plan"
SCOPING = "Services Calculator"


def seed_gitlab(server: GitLabStandIn, issues: int, idle: int) -> None:
    """A project with every label PS Plan writes, `idle` issues quiet for 3 to 5 months, the rest recent."""
    from psplan.fiscal import add_months, quarter_code
    from scoping.labels import canonical_labels, close_qtr_label

    now = datetime.now(UTC)
    quarters = [close_qtr_label(quarter_code(add_months(now.date(), -3 * n))) for n in range(6)]
    for label in [SCOPING, *canonical_labels(), *quarters]:
        server.add_label(label)
    for n in range(issues):
        when = now - timedelta(days=95 + n % 60) if n < idle else now - timedelta(days=n % 20, hours=1)
        server.add_issue(
            title=f"Scoping customer {n}",
            labels=[SCOPING, "proposal::Strawman_WIP", "Segment::SMB"],
            created_at=when - timedelta(days=10),
            updated_at=when,
        )


def seed_salesforce(standin: SalesforceStandIn, count: int) -> None:
    for n in range(count):
        standin.add_opportunity(
            Name=f"Deal {n:05d}", Scoping_Issue_Link__c=f"https://gitlab.example/ps/ps-plan/-/issues/{n + 1}"
        )


def edit_opportunities(opportunities, *, deferred: bool) -> None:
    """One PS-field edit each, in one transaction; `deferred` leaves them queued (the workers are down)."""
    from django.db import transaction

    from opportunities.services import update_ps_fields
    from psplan import queue

    with queue.deliveries_deferred() if deferred else nullcontext(), transaction.atomic():
        for opportunity in opportunities:
            update_ps_fields(
                opportunity=opportunity,
                actor=None,
                em_confidence="Amber",
                em_confidence_rationale=f"Benchmark round {'two' if deferred else 'one'}: procurement",
            )


def clean_round(args, gitlab: GitLabStandIn, salesforce: SalesforceStandIn) -> dict[str, float]:
    from opportunities.models import Opportunity
    from opportunities.salesforce_sync import pull_opportunities
    from psplan import queue
    from scoping.gitlab_sync import sync_issues
    from scoping.models import GitLabWrite
    from scoping.rules import apply_rules
    from scoping.write_back import deliver_gitlab_writes

    sync_issues(full=True)
    pull_opportunities(full=True)
    with queue.deliveries_deferred():
        closed = len(apply_rules(limit=args.closes).changes)
    assert GitLabWrite.objects.count() == closed == args.closes, closed
    gitlab.reset_requests()
    started = time.perf_counter()
    counts = deliver_gitlab_writes()  # a worker's run: no budget, one try per call
    took = time.perf_counter() - started
    requests, reads = gitlab.request_count, gitlab.count_requests("GET")
    print(
        f"  GitLab: {counts['delivered']} of {closed} closures delivered in {took:.1f} s with {requests} requests "
        f"({gitlab.count_requests('PUT')} PUT, {gitlab.count_requests('POST')} POST, {reads} GET)",
        flush=True,
    )
    salesforce.reset_requests()
    started = time.perf_counter()
    edit_opportunities(Opportunity.objects.order_by("salesforce_id")[: args.edits], deferred=False)
    sf_requests = len(salesforce.requests)
    print(
        f"  Salesforce: {args.edits} edits in one transaction delivered on commit in "
        f"{time.perf_counter() - started:.1f} s with {sf_requests} requests "
        f"({len(salesforce.write_requests)} composite, {len(salesforce.query_requests)} read-back queries)",
        flush=True,
    )
    return {
        "gitlab_requests_per_write": requests / closed,
        "gitlab_reads_per_100_writes": reads / closed * 100,
        "salesforce_requests_per_100_writes": sf_requests / args.edits * 100,
    }


def faulty_round(args, gitlab: GitLabStandIn, salesforce: SalesforceStandIn) -> int:
    from opportunities.models import Opportunity, SalesforceWrite
    from psplan.queue import WriteStatus
    from scoping.models import GitLabWrite
    from scoping.sync import run_sync

    edit_opportunities(Opportunity.objects.order_by("-salesforce_id")[: args.edits], deferred=True)
    waiting = SalesforceWrite.objects.filter(status=WriteStatus.PENDING).count()
    gitlab.fail_at_random({429: 0.10, 502: 0.05}, seed=11)
    salesforce.fail_at_random(salesforce_faults.UNAVAILABLE, 0.05, seed=11)
    gitlab.reset_requests()
    started = time.perf_counter()
    report = run_sync(delivery_budget=args.budget)
    took = time.perf_counter() - started
    gitlab.clear_faults()
    salesforce.clear_faults()
    for step in report.steps:
        print(f"    {step.message}", flush=True)
    pending = len(report.pending)
    delivered = GitLabWrite.objects.filter(status=WriteStatus.DELIVERED).count()
    print(
        f"  one sync under faults took {took:.1f} s: {waiting} Salesforce edits were waiting, "
        f"{delivered} GitLab writes delivered so far, {pending} writes still pending, "
        f"{len(report.failed)} failed; {gitlab.count_requests()} GitLab requests in all",
        flush=True,
    )
    return pending


def delivered_twice(gitlab: GitLabStandIn, salesforce: SalesforceStandIn, issues: int) -> int:
    comments = [sum(not note["system"] for note in gitlab.notes(iid)) for iid in range(1, issues + 1)]
    return sum(max(0, count - 1) for count in comments) + sum(
        max(0, count - 2)
        for count in salesforce.updates_applied.values()  # two rounds of one edit each
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--closes", type=int, default=500)
    parser.add_argument("--edits", type=int, default=500)
    parser.add_argument("--budget", type=int, default=120, help="PSPLAN_DELIVERY_BUDGET of the sync, seconds")
    args = parser.parse_args()

    gitlab = GitLabStandIn(token=TOKEN, project_path=PROJECT).start()
    salesforce = SalesforceStandIn().start()
    try:
        environ = {
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": TOKEN,
            "GITLAB_PROJECT": PROJECT,
            "GITLAB_SCOPING_LABEL": SCOPING,
            "REQUESTS_CA_BUNDLE": salesforce.ca_bundle_path,
            "SALESFORCE_INSTANCE_URL": salesforce.instance_url,
            "SALESFORCE_ACCESS_TOKEN": salesforce.access_token,
            "PSPLAN_MAX_AUTO_CLOSES_PER_RUN": str(args.closes),
        }
        with django_on_throwaway_database(environ, unset=("SALESFORCE_USERNAME",)) as vendor:
            print(
                f"GitLab stand-in on {gitlab.url}, Salesforce stand-in on {salesforce.instance_url}; {vendor}"
            )
            seed_gitlab(gitlab, args.issues, idle=2 * args.closes)
            seed_salesforce(salesforce, args.edits)
            print("Round 1, no faults:", flush=True)
            figures: dict[str, object] = {
                k: f"{v:.3f}" for k, v in clean_round(args, gitlab, salesforce).items()
            }
            print("Round 2, GitLab 10 % 429 and 5 % 502, Salesforce 5 % 503:", flush=True)
            figures["writes_pending_after_sync_under_faults"] = faulty_round(args, gitlab, salesforce)
            figures["writes_delivered_twice"] = delivered_twice(gitlab, salesforce, args.issues)
    finally:
        gitlab.stop()
        salesforce.stop()
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
