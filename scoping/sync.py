"""One sync of everything — GitLab, then Salesforce, then the closing rules — under one lock.

`manage.py sync` and the periodic Celery task both run `run_sync`. Two syncs never overlap: the
lock is a database row claimed by a conditional UPDATE, so it holds across processes and hosts
with or without a broker; the second sync records a SKIPPED run saying who holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SalesforceWrite, SyncRun
from opportunities.salesforce_client import SalesforceError
from opportunities.salesforce_sync import PULL_KINDS
from opportunities.write_back import deliver_salesforce_writes
from psplan import heartbeat, queue
from psplan.queue import WriteStatus
from scoping.gitlab_client import GitLabError
from scoping.gitlab_sync import GITLAB_KINDS, sync_issues
from scoping.models import GitLabWrite, SyncLock
from scoping.opportunity_sync import sync_salesforce
from scoping.rules import apply_rules
from scoping.write_back import deliver_gitlab_writes

logger = logging.getLogger(__name__)

LOCK_NAME = "sync"
Progress = Callable[[int], None]
ProgressFactory = Callable[[str], Progress | None]


# --- The lock ----------------------------------------------------------------------------------


@dataclass
class Lease:
    """A held lock; the heartbeat renews it while its holder lives."""

    name: str
    owner: str
    ttl: int

    def renew(self) -> None:
        SyncLock.objects.filter(name=self.name, owner=self.owner).update(
            expires_at=timezone.now() + timedelta(seconds=self.ttl)
        )


def claim_lock(*, name: str = LOCK_NAME, ttl: int | None = None) -> Lease | None:
    """Take the named lock if it is free or its holder stopped renewing it; None when someone holds it."""
    ttl = ttl or settings.PSPLAN_SYNC_LOCK_TTL
    lock, _ = SyncLock.objects.get_or_create(name=name)
    now = timezone.now()
    owner = heartbeat.owner_name()
    claimed = (
        SyncLock.objects.filter(name=name, owner=lock.owner)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lte=now))
        .update(owner=owner, acquired_at=now, expires_at=now + timedelta(seconds=ttl))
    )
    if not claimed:
        return None
    dead = heartbeat.process_of(lock.owner) if lock.owner else ""
    if dead and dead != heartbeat.process_name():  # it stopped renewing: its runs died with it
        SyncRun.objects.abandon_dead(process=dead)
    return Lease(name=name, owner=owner, ttl=ttl)


def release_lock(lease: Lease) -> None:
    """Free the lock, unless it expired and someone else has taken it since."""
    SyncLock.objects.filter(name=lease.name, owner=lease.owner).update(owner="", expires_at=None)


@contextmanager
def sync_lock(*, name: str = LOCK_NAME, ttl: int | None = None) -> Iterator[Lease | None]:
    """Hold the lock for the block; yields None (and holds nothing) when another sync has it.

    A holder killed mid-sync stops renewing, so the next sync takes the lock over within one ttl.
    """
    lease = claim_lock(name=name, ttl=ttl)
    if lease is None:
        yield None
        return
    try:
        with heartbeat.beating(lease.renew):
            yield lease
    finally:
        release_lock(lease)


def lock_holder(name: str = LOCK_NAME) -> SyncLock | None:
    """The lock row while someone holds it."""
    return SyncLock.objects.filter(name=name, expires_at__gt=timezone.now()).first()


# --- The sync ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """How one part of a sync ended."""

    name: str
    status: str  # a SyncStatus value
    message: str
    run: SyncRun | None = None

    @property
    def failed(self) -> bool:
        return self.status == SyncStatus.FAILED


@dataclass(frozen=True)
class WriteOutcome:
    """A write a sync could not deliver: where to, why, and (while pending) when it is tried next."""

    system: str
    record: str
    error: str
    next_attempt_at: datetime | None = None


@dataclass
class SyncReport:
    """Everything one `run_sync` did, step by step; `rules` is the rules' result when they ran."""

    steps: list[Step] = field(default_factory=list)
    rules: object | None = None
    locked_out: bool = False
    pending: list[WriteOutcome] = field(default_factory=list)
    failed: list[WriteOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[Step]:
        return [step for step in self.steps if step.failed]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.locked_out and not self.pending


def run_sync(
    *,
    full: bool = False,
    gitlab: bool = True,
    salesforce: bool = True,
    rules: bool = True,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    delivery_budget: float | None = None,
) -> SyncReport:
    """Sync the chosen systems, apply the rules (planned only on a dry run), then deliver the queued writes.

    A system that is not configured is skipped with a notice; an unreachable one fails its step,
    the others still run, and the rules wait for a sync in which every system succeeded. With a
    `delivery_budget` (seconds) the writes are delivered here, transient failures retried within it,
    and the report lists what is still pending; without one, delivery is handed to the workers.
    """
    report, started = SyncReport(), timezone.now()
    with sync_lock() as lease, queue.deliveries_deferred():
        if lease is None:
            report.locked_out = True
            report.steps.append(_locked_out(full=full, gitlab=gitlab))
            return report
        track = progress or (lambda label: None)
        if gitlab:
            report.steps.append(_gitlab_step(full=full, progress=track("GitLab issues")))
        if salesforce:
            report.steps.append(
                _salesforce_step(full=full, dry_run=dry_run, progress=track("Salesforce opportunities"))
            )
        if rules:
            report.steps.append(_rules_step(report, dry_run=dry_run))
    if dry_run:
        return report
    if delivery_budget is None:
        for system in queue.DELIVERY_TASKS:
            queue.deliver_soon(system)
    else:
        report.steps += _delivery_steps(gitlab=gitlab, salesforce=salesforce, budget=delivery_budget)
        report.pending = pending_writes()
        report.failed = failed_writes(since=started)
    return report


def _gitlab_step(*, full: bool, progress: Progress | None) -> Step:
    if not settings.GITLAB_ENABLED:
        return Step("GitLab", SyncStatus.SKIPPED, "GitLab sync is disabled: GITLAB_TOKEN is not set")
    try:
        run = sync_issues(full=full, progress=progress)
    except GitLabError as exc:
        run = SyncRun.objects.filter(kind__in=GITLAB_KINDS).first()
        return Step("GitLab", SyncStatus.FAILED, f"GitLab sync failed: {exc}", run)
    return Step("GitLab", SyncStatus.SUCCEEDED, describe_run(run), run)


def _salesforce_step(*, full: bool, dry_run: bool, progress: Progress | None) -> Step:
    if not settings.SALESFORCE_ENABLED:
        return Step(
            "Salesforce",
            SyncStatus.SKIPPED,
            "Salesforce sync is disabled: SALESFORCE_INSTANCE_URL is not set",
        )
    try:
        run = sync_salesforce(full=full, progress=progress, link_ems=not dry_run)
    except SalesforceError as exc:
        run = SyncRun.objects.filter(kind__in=PULL_KINDS).first()
        return Step("Salesforce", SyncStatus.FAILED, f"Salesforce sync failed: {exc}", run)
    return Step("Salesforce", run.status, describe_run(run), run)


def _rules_step(report: SyncReport, *, dry_run: bool) -> Step:
    if report.failures:
        return Step("Rules", SyncStatus.SKIPPED, "Closing rules skipped: they wait for a sync that succeeds")
    if not any(step.status == SyncStatus.SUCCEEDED for step in report.steps):
        return Step("Rules", SyncStatus.SKIPPED, "Closing rules skipped: nothing was synced")
    try:
        result = apply_rules(as_of=None, dry_run=dry_run)
    except Exception as exc:  # recorded on the rules' own run; the other steps stand
        logger.exception("Closing rules failed")
        return Step("Rules", SyncStatus.FAILED, f"Closing rules failed: {type(exc).__name__}: {exc}")
    report.rules = result
    summary = ", ".join(f"{key} {value}" for key, value in result.counts.items() if value and key != "cap")
    verb = "would change" if dry_run else "changed"
    return Step(
        "Rules",
        SyncStatus.SUCCEEDED,
        f"Closing rules {verb} {len(result.changes)} issue(s){': ' + summary if summary else ''}",
        result.run,
    )


def _delivery_steps(*, gitlab: bool, salesforce: bool, budget: float) -> list[Step]:
    """Deliver both queues here within the budget, and say how it went.

    Salesforce first: 25 writes share a request there, so it needs a few seconds of the budget
    where GitLab, at two requests a write, may need all the rest.
    """
    deadline = time.monotonic() + budget
    steps = []
    for name, wanted, deliver in (
        ("Salesforce write-back", salesforce, deliver_salesforce_writes),
        ("GitLab write-back", gitlab, deliver_gitlab_writes),
    ):
        if not wanted:
            continue
        counts = deliver(budget=max(0.0, deadline - time.monotonic()))
        detail = ", ".join(f"{counts[key]} {key}" for key in ("delivered", "failed") if counts[key])
        status = SyncStatus.FAILED if counts["failed"] else SyncStatus.SUCCEEDED
        steps.append(Step(name, status, f"{name}: {detail or 'nothing to send'}"))
    return steps


def pending_writes() -> list[WriteOutcome]:
    """Every write still waiting, with its last error and next attempt."""
    gitlab = GitLabWrite.objects.filter(status=WriteStatus.PENDING).select_related("issue")
    salesforce = SalesforceWrite.objects.filter(status=WriteStatus.PENDING).select_related("opportunity")
    return [
        *(WriteOutcome("GitLab", f"#{w.issue.iid}", w.last_error, w.next_attempt_at) for w in gitlab),
        *(
            WriteOutcome("Salesforce", w.opportunity.name, w.last_error, w.next_attempt_at)
            for w in salesforce
        ),
    ]


def failed_writes(*, since: datetime) -> list[WriteOutcome]:
    """Writes that failed for good since a moment, with the other system's reason."""
    gitlab = GitLabWrite.objects.filter(status=WriteStatus.FAILED, failed_at__gte=since).select_related(
        "issue"
    )
    salesforce = SalesforceWrite.objects.filter(
        status=WriteStatus.FAILED, failed_at__gte=since
    ).select_related("opportunity")
    return [
        *(WriteOutcome("GitLab", f"#{w.issue.iid}", w.last_error) for w in gitlab),
        *(WriteOutcome("Salesforce", w.opportunity.name, w.last_error) for w in salesforce),
    ]


def _locked_out(*, full: bool, gitlab: bool) -> Step:
    holder = lock_holder()
    since = (
        f" since {timezone.localtime(holder.acquired_at):%Y-%m-%d %H:%M:%S}"
        if holder and holder.acquired_at
        else ""
    )
    who = f" ({holder.owner}{since})" if holder else ""
    message = f"Skipped: another sync is running{who}"
    if gitlab:
        kind = SyncKind.GITLAB_FULL if full else SyncKind.GITLAB_INCREMENTAL
    else:
        kind = SyncKind.SALESFORCE_FULL if full else SyncKind.SALESFORCE_INCREMENTAL
    return Step("Sync", SyncStatus.SKIPPED, message, SyncRun.skipped(kind, message))


def describe_run(run: SyncRun) -> str:
    """One line for people: what a run did and how long it took."""
    counts = ", ".join(f"{key} {value}" for key, value in run.counts.items() if value)
    took = f" in {run.duration.total_seconds():.1f} s" if run.duration is not None else ""
    detail = f": {counts}" if counts else ""
    if run.status == SyncStatus.SKIPPED:
        return f"{run.get_kind_display()} skipped: {run.error}"
    return f"{run.get_kind_display()} {run.get_status_display().lower()}{took}{detail}"
