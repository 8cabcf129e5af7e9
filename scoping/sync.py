"""One sync of everything — GitLab, then Salesforce, then the closing rules — under one lock.

`manage.py sync` and the periodic Celery task both run `run_sync`. Two syncs never overlap: the
lock is a database row claimed by a conditional UPDATE, so it holds across processes and hosts
with or without a broker; the second sync records a SKIPPED run saying who holds it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping.gitlab_client import GitLabError
from scoping.models import SyncLock

logger = logging.getLogger(__name__)

LOCK_NAME = "sync"
Progress = Callable[[int], None]
ProgressFactory = Callable[[str], Progress | None]


# --- The lock ----------------------------------------------------------------------------------


@dataclass
class Lease:
    """A held lock; `keep_alive` extends it while a long sync makes progress."""

    name: str
    owner: str
    ttl: int
    renewed: float = field(default_factory=time.monotonic)

    def keep_alive(self) -> None:
        """Push the expiry out again, at most every third of the time to live."""
        if time.monotonic() - self.renewed < self.ttl / 3:
            return
        SyncLock.objects.filter(name=self.name, owner=self.owner).update(
            expires_at=timezone.now() + timedelta(seconds=self.ttl)
        )
        self.renewed = time.monotonic()


def claim_lock(*, name: str = LOCK_NAME, ttl: int | None = None) -> Lease | None:
    """Take the named lock if it is free or its holder's lease ran out; None when someone holds it."""
    ttl = ttl or settings.PSPLAN_SYNC_LOCK_TTL
    SyncLock.objects.get_or_create(name=name)
    now = timezone.now()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    claimed = (
        SyncLock.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lte=now))
        .update(owner=owner, acquired_at=now, expires_at=now + timedelta(seconds=ttl))
    )
    return Lease(name=name, owner=owner, ttl=ttl) if claimed else None


def release_lock(lease: Lease) -> None:
    """Free the lock, unless it expired and someone else has taken it since."""
    SyncLock.objects.filter(name=lease.name, owner=lease.owner).update(owner="", expires_at=None)


@contextmanager
def sync_lock(*, name: str = LOCK_NAME, ttl: int | None = None) -> Iterator[Lease | None]:
    """Hold the lock for the block; yields None (and holds nothing) when another sync has it."""
    lease = claim_lock(name=name, ttl=ttl)
    try:
        yield lease
    finally:
        if lease is not None:
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


@dataclass
class SyncReport:
    """Everything one `run_sync` did, step by step; `rules` is the rules' result when they ran."""

    steps: list[Step] = field(default_factory=list)
    rules: object | None = None
    locked_out: bool = False

    @property
    def failures(self) -> list[Step]:
        return [step for step in self.steps if step.failed]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.locked_out


def run_sync(
    *,
    full: bool = False,
    gitlab: bool = True,
    salesforce: bool = True,
    rules: bool = True,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
) -> SyncReport:
    """Sync the chosen systems, then apply the rules (planned only on a dry run), holding the lock.

    A system that is not configured is skipped with a notice; an unreachable one fails its step,
    the others still run, and the rules wait for a sync in which every system succeeded.
    """
    report = SyncReport()
    with sync_lock() as lease:
        if lease is None:
            report.locked_out = True
            report.steps.append(_locked_out(full=full, gitlab=gitlab))
            return report
        track = _tracking(progress, lease)
        if gitlab:
            report.steps.append(_gitlab_step(full=full, dry_run=dry_run, progress=track("GitLab issues")))
        if salesforce:
            report.steps.append(
                _salesforce_step(full=full, dry_run=dry_run, progress=track("Salesforce opportunities"))
            )
        if rules:
            report.steps.append(_rules_step(report, dry_run=dry_run))
    return report


def _tracking(progress: ProgressFactory | None, lease: Lease) -> Callable[[str], Progress]:
    """Progress callbacks that also keep the lock alive while a long sync moves on."""

    def factory(label: str) -> Progress:
        shown = progress(label) if progress else None

        def advance(count: int) -> None:
            lease.keep_alive()
            if shown is not None:
                shown(count)

        return advance

    return factory


def _gitlab_step(*, full: bool, dry_run: bool, progress: Progress) -> Step:
    from scoping.gitlab_sync import sync_issues
    from scoping.outbox import deliver_pending_writes

    if not settings.GITLAB_ENABLED:
        return Step("GitLab", SyncStatus.SKIPPED, "GitLab sync is disabled: GITLAB_TOKEN is not set")
    if not dry_run:
        deliver_pending_writes()  # first, so the sync reads PS Plan's own edits back
    try:
        run = sync_issues(full=full, progress=progress)
    except GitLabError as exc:
        run = SyncRun.objects.filter(kind__in=_gitlab_kinds()).first()
        return Step("GitLab", SyncStatus.FAILED, f"GitLab sync failed: {exc}", run)
    return Step("GitLab", SyncStatus.SUCCEEDED, describe_run(run), run)


def _salesforce_step(*, full: bool, dry_run: bool, progress: Progress) -> Step:
    from opportunities.salesforce_client import SalesforceError
    from scoping.opportunity_sync import sync_salesforce

    if not settings.SALESFORCE_ENABLED:
        return Step(
            "Salesforce",
            SyncStatus.SKIPPED,
            "Salesforce sync is disabled: SALESFORCE_INSTANCE_URL is not set",
        )
    try:
        run = sync_salesforce(full=full, progress=progress, send_edits=not dry_run)
    except SalesforceError as exc:
        run = SyncRun.objects.filter(kind__in=_salesforce_kinds()).first()
        return Step("Salesforce", SyncStatus.FAILED, f"Salesforce sync failed: {exc}", run)
    return Step("Salesforce", run.status, describe_run(run), run)


def _rules_step(report: SyncReport, *, dry_run: bool) -> Step:
    from scoping.rules import apply_rules

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
    run = getattr(result, "run", None)
    counts = getattr(result, "counts", {})
    summary = ", ".join(f"{key} {value}" for key, value in counts.items() if value and key != "cap")
    verb = "would change" if dry_run else "changed"
    changes = len(getattr(result, "changes", []))
    return Step(
        "Rules",
        SyncStatus.SUCCEEDED,
        f"Closing rules {verb} {changes} issue(s){': ' + summary if summary else ''}",
        run,
    )


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
    now = timezone.now()
    run = SyncRun.objects.create(
        kind=kind, status=SyncStatus.SKIPPED, started_at=now, finished_at=now, error=message
    )
    logger.info(message)
    return Step("Sync", SyncStatus.SKIPPED, message, run)


def describe_run(run: SyncRun) -> str:
    """One line for people: what a run did and how long it took."""
    counts = ", ".join(f"{key} {value}" for key, value in run.counts.items() if value)
    took = f" in {run.duration.total_seconds():.1f} s" if run.duration is not None else ""
    detail = f": {counts}" if counts else ""
    if run.status == SyncStatus.SKIPPED:
        return f"{run.get_kind_display()} skipped: {run.error}"
    return f"{run.get_kind_display()} {run.get_status_display().lower()}{took}{detail}"


def _gitlab_kinds() -> tuple[str, ...]:
    return (SyncKind.GITLAB_FULL, SyncKind.GITLAB_INCREMENTAL)


def _salesforce_kinds() -> tuple[str, ...]:
    return (SyncKind.SALESFORCE_FULL, SyncKind.SALESFORCE_INCREMENTAL)
