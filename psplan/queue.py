"""The write queue both mirrors share: rows that wait to reach GitLab or Salesforce, and how they are claimed.

A row is written in the same transaction as the local change it carries. A delivery run claims due rows
with a conditional UPDATE (a lease with a token), so two workers never send the same row; a record's
rows are delivered in the order they were made; a row GitLab or Salesforce could not take waits with a
capped, jittered exponential backoff that honours the server's Retry-After; a row the other system
refused fails for good with its reason. Each system keeps only its thin delivery function.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import Case, Count, Exists, F, Min, OuterRef, Q, Subquery, When
from django.utils import timezone

from psplan import heartbeat
from psplan.audit import ChangeSource
from psplan.celery import app as celery_app

logger = logging.getLogger(__name__)

# Whatever a server asks for, a write is looked at again within a day.
MAX_SERVER_DELAY = 24 * 3600
# A run with a budget looks this often at writes another live run is sending.
IN_FLIGHT_POLL = 1.0
# Writes made within this many seconds of each other start one delivery run.
GATHER_SECONDS = 2
# The delivery task of each system, started by `deliver_soon`.
DELIVERY_TASKS = {
    "gitlab": "scoping.tasks.deliver_gitlab_writes",
    "salesforce": "opportunities.tasks.deliver_salesforce_writes",
}


class WriteStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class QueuedWrite(models.Model):
    """One change waiting to reach the other system; `record_field` names the record it changes."""

    record_field = ""

    status = models.CharField(max_length=10, choices=WriteStatus.choices, default=WriteStatus.PENDING)
    source = models.CharField(max_length=12, choices=ChangeSource.choices, default=ChangeSource.PAGE)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="Due from then; while a delivery run holds it, the end of its lease"
    )
    lease_token = models.CharField(max_length=32, blank=True, help_text="The delivery run that claimed it")
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]


W = TypeVar("W", bound=QueuedWrite)


def due(model: type[W]) -> models.QuerySet[W]:
    """Pending rows whose time has come, unless an earlier row of the same record still waits."""
    record = model.record_field
    now = timezone.now()
    waiting = model.objects.filter(
        **{record: OuterRef(record)},
        status=WriteStatus.PENDING,
        next_attempt_at__gt=now,
        pk__lt=OuterRef("pk"),
    )
    return model.objects.filter(status=WriteStatus.PENDING, next_attempt_at__lte=now).exclude(Exists(waiting))


def claim(model: type[W], *, limit: int, lease: timedelta) -> list[W]:
    """Lease up to `limit` due rows to this run, oldest first, with their record loaded.

    Two runs may race for the rows of one record; a claimed row that an earlier row of its record,
    held by nobody or by another run, still precedes goes back at once, so a record's rows are sent
    in order.
    """
    now, token = timezone.now(), uuid.uuid4().hex
    candidates = list(due(model).order_by("pk").values_list("pk", flat=True)[:limit])
    if not candidates:
        return []
    model.objects.filter(pk__in=candidates, status=WriteStatus.PENDING, next_attempt_at__lte=now).update(
        lease_token=token, next_attempt_at=now + lease, attempts=F("attempts") + 1
    )
    record = model.record_field
    ahead = model.objects.filter(
        **{record: OuterRef(record)}, status=WriteStatus.PENDING, pk__lt=OuterRef("pk")
    ).exclude(lease_token=token)
    model.objects.filter(lease_token=token).filter(Exists(ahead)).update(
        lease_token="", next_attempt_at=now, attempts=F("attempts") - 1
    )
    return list(model.objects.filter(lease_token=token).select_related(record).order_by("pk"))


def retry_delay(attempts: int, *, base: float, cap: float, retry_after: float | None = None) -> timedelta:
    """Capped exponential backoff with jitter, never sooner than the server asked for."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    delay = ceiling * random.uniform(0.75, 1.0)
    if retry_after:
        delay = max(delay, min(retry_after, MAX_SERVER_DELAY))
    return timedelta(seconds=delay)


def delivered(writes: Iterable[QueuedWrite]) -> int:
    """Mark rows delivered; returns how many."""
    return _update(writes, status=WriteStatus.DELIVERED, delivered_at=timezone.now(), last_error="")


def failed(writes: Iterable[QueuedWrite], *, error: str) -> int:
    """Mark rows failed for good with the other system's reason; returns how many."""
    return _update(writes, status=WriteStatus.FAILED, failed_at=timezone.now(), last_error=error)


def retry_later(writes: Sequence[QueuedWrite], *, error: str, delay: timedelta) -> None:
    """Put rows back to wait `delay`: nothing is lost, nothing sent twice."""
    _update(writes, next_attempt_at=timezone.now() + delay, last_error=error, lease_token="")


def latest_write_state(model: type[QueuedWrite]) -> dict[str, Subquery]:
    """Annotations with the state of each record's newest write: `write_status`, `write_error`, `write_since`.

    For `.values()` rows read in one query; `write_back` turns them into the API's object.
    """
    newest = model.objects.filter(**{model.record_field: OuterRef("pk")}).order_by("-pk")
    since = Case(
        When(status=WriteStatus.DELIVERED, then="delivered_at"),
        When(status=WriteStatus.FAILED, then="failed_at"),
        default="created_at",
    )
    return {
        "write_status": Subquery(newest.values("status")[:1]),
        "write_error": Subquery(newest.values("last_error")[:1]),
        "write_since": Subquery(newest.annotate(since=since).values("since")[:1]),
    }


def write_back(row: dict) -> dict[str, object] | None:
    """`{status, error, since}` of a row annotated by `latest_write_state`; None when nothing was written."""
    if row["write_status"] is None:
        return None
    return {"status": row["write_status"], "error": row["write_error"] or None, "since": row["write_since"]}


def retry_now(model: type[QueuedWrite]) -> int:
    """Make every waiting row due now and give failed ones another try; returns how many."""
    now = timezone.now()
    waiting = model.objects.filter(status=WriteStatus.PENDING, lease_token="").update(next_attempt_at=now)
    failed_ = model.objects.filter(status=WriteStatus.FAILED).update(
        status=WriteStatus.PENDING, next_attempt_at=now, attempts=0, failed_at=None
    )
    return waiting + failed_


def _update(writes: Iterable[QueuedWrite], **values: object) -> int:
    rows = list(writes)
    if not rows:
        return 0
    return type(rows[0]).objects.filter(pk__in=[row.pk for row in rows]).update(**values)


def drain(
    model: type[W],
    deliver: Callable[[list[W]], bool],
    *,
    batch: int,
    budget: float = 0.0,
) -> None:
    """Claim and deliver due rows batch by batch until none is due.

    `deliver` sends one claimed batch and records each row's outcome; it returns False when the
    other system is unusable (down, rate limiting), which ends the run at once. With a `budget` in
    seconds, rows that must wait a little are waited for, as long as they come due within it.

    A claim is a lease of PSPLAN_SYNC_LOCK_TTL seconds that this process's heartbeat renews while the
    run lives: a slow run keeps its rows, and those of a run killed mid-batch come due within the TTL.
    """
    lease = timedelta(seconds=settings.PSPLAN_SYNC_LOCK_TTL)
    held: list[str] = []

    def renew() -> None:
        model.objects.filter(lease_token__in=list(held), status=WriteStatus.PENDING).update(
            next_attempt_at=timezone.now() + lease
        )

    with heartbeat.beating(renew):
        _drain(model, deliver, batch=batch, lease=lease, budget=budget, held=held)


def _drain(
    model: type[W],
    deliver: Callable[[list[W]], bool],
    *,
    batch: int,
    lease: timedelta,
    budget: float,
    held: list[str],
) -> None:
    deadline = time.monotonic() + budget
    while True:
        writes = claim(model, limit=batch, lease=lease)
        if writes:
            held.append(writes[0].lease_token)
            if deliver(writes) or budget > 0:
                continue
            return
        # Only a write whose time is still to come can change that: a pending one already past its time
        # waits behind an earlier write of its record, and looking again before then would spin.
        now = timezone.now()
        waiting = model.objects.filter(status=WriteStatus.PENDING, next_attempt_at__gt=now)
        soonest = waiting.aggregate(
            at=Min("next_attempt_at"), in_flight=Count("pk", filter=~Q(lease_token=""))
        )
        if soonest["at"] is None:
            return
        wait = (soonest["at"] - now).total_seconds()
        if soonest["in_flight"]:
            # Another live run (a worker beside a manual sync) is sending them: its lease is renewed for
            # as long as it lives, but its rows settle any moment now.
            wait = min(wait, IN_FLIGHT_POLL)
        if time.monotonic() + wait > deadline:
            return
        time.sleep(wait)


_deferral = threading.local()


@contextmanager
def deliveries_deferred() -> Iterator[None]:
    """Inside, committed writes are not handed to delivery one transaction at a time: the caller (a
    sync, whose rules commit issue by issue) delivers them all together afterwards."""
    before = getattr(_deferral, "active", False)
    _deferral.active = True
    try:
        yield
    finally:
        _deferral.active = before


def deliver_soon(system: str) -> None:
    """Start one delivery run for this system once the transaction commits (once per transaction).

    With a broker, writes committed within GATHER_SECONDS share one run. Enqueuing never fails the
    caller: when the broker cannot be reached, the committed rows wait for the periodic sweep.
    """
    if getattr(_deferral, "active", False):
        return
    if any(
        getattr(callback, "delivery_system", None) == system for _, callback, _ in connection.run_on_commit
    ):
        return
    callback = partial(_start_delivery, system)
    callback.delivery_system = system  # type: ignore[attr-defined]
    transaction.on_commit(callback)


def _start_delivery(system: str) -> None:
    name = DELIVERY_TASKS[system]
    if name not in celery_app.tasks:
        # The tasks modules, as a worker loads them at start. Only once: it runs django.setup() again,
        # whose logging config silences a Celery worker for good.
        celery_app.loader.import_default_modules()
    task = celery_app.tasks[name]
    if celery_app.conf.task_always_eager:
        task.apply()
        return
    if not _first_in_window(system):
        return
    try:
        task.apply_async(countdown=GATHER_SECONDS, retry=False)
    except Exception as exc:  # kombu raises many types when the broker is down
        logger.warning("Could not queue %s delivery (%s); the periodic sweep sends it", system, exc)
        forget_window(system)


def _window_key(system: str) -> str:
    return f"psplan:delivery-scheduled:{system}"


def _first_in_window(system: str) -> bool:
    try:
        return bool(cache.add(_window_key(system), 1, timeout=GATHER_SECONDS * 5))
    except Exception:  # the cache is down: a second run is cheaper than a write left waiting
        return True


def forget_window(system: str) -> None:
    """A delivery run starts: writes committed from now on need a run of their own."""
    try:
        cache.delete(_window_key(system))
    except Exception:
        logger.warning("Cache unavailable; delivery runs may not be gathered")
