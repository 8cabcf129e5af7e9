"""The write queue both mirrors share: which writes are due, claims by lease, order per record, backoff,
the drain loop and the start of delivery runs. GitLabWrite stands for any queue (SalesforceWrite is the other)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.transport.memory import Channel as MemoryChannel

from psplan import queue
from psplan.celery import app as celery_app
from psplan.queue import WriteStatus
from scoping.models import GitLabWrite, ScopingIssue
from tests.factories import ScopingIssueFactory

LEASE = timedelta(minutes=10)


# --- Backoff (no database) ---------------------------------------------------------------------

# (attempts, base, cap, server's Retry-After, shortest and longest wait in seconds)
RETRY_DELAYS = [
    (1, 30, 3600, None, 22.5, 30),  # the first retry waits the base, less up to a quarter of jitter
    (0, 30, 3600, None, 22.5, 30),  # a write never tried waits like one tried once
    (2, 30, 3600, None, 45, 60),
    (3, 30, 3600, None, 90, 120),
    (5, 30, 3600, None, 360, 480),
    (20, 30, 3600, None, 2700, 3600),  # the cap holds however often it failed
    (1, 30, 3600, 120, 120, 120),  # GitLab asked for longer than the backoff: exactly that long
    (3, 30, 3600, 10, 90, 120),  # asked for less: the backoff still applies
    (1, 30, 3600, 10**9, 86_400, 86_400),  # an absurd Retry-After: looked at again within a day
    (1, 30, 3600, 0, 22.5, 30),  # Retry-After: 0 asks for nothing more
    (2, 0.5, 30, None, 0.75, 1.0),  # the patient backoff of a sync: fractions of a second
]


@pytest.mark.parametrize(("attempts", "base", "cap", "retry_after", "shortest", "longest"), RETRY_DELAYS)
def test_a_write_that_could_not_be_sent_waits_a_capped_jittered_backoff_or_what_the_server_asked(
    attempts, base, cap, retry_after, shortest, longest
):
    waits = {
        queue.retry_delay(attempts, base=base, cap=cap, retry_after=retry_after).total_seconds()
        for _ in range(200)
    }

    assert shortest <= min(waits) and max(waits) <= longest


def test_the_jitter_spreads_writes_that_failed_together():
    waits = {queue.retry_delay(1, base=30, cap=3600).total_seconds() for _ in range(50)}

    assert len(waits) > 1


# --- Which writes are due ------------------------------------------------------------------------


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def queued(issue: ScopingIssue, *, due_in: timedelta = timedelta(0), **fields) -> GitLabWrite:
    """A write of `issue` made now, due `due_in` from now."""
    return GitLabWrite.objects.create(
        issue=issue, intent={"em_status": "ToDo"}, next_attempt_at=timezone.now() + due_in, **fields
    )


def due_writes() -> list[GitLabWrite]:
    return list(queue.due(GitLabWrite).order_by("pk"))


@pytest.mark.django_db
def test_a_pending_write_is_due_from_its_time_on_and_a_settled_one_never(clock):
    issues = ScopingIssueFactory.create_batch(5)
    now_due = queued(issues[0])
    overdue = queued(issues[1], due_in=-timedelta(hours=1))
    queued(issues[2], due_in=timedelta(seconds=1))
    queued(issues[3], due_in=-timedelta(hours=1), status=WriteStatus.DELIVERED)
    queued(issues[4], due_in=-timedelta(hours=1), status=WriteStatus.FAILED)

    assert due_writes() == [now_due, overdue]


@pytest.mark.django_db
def test_a_write_waits_behind_an_earlier_write_of_its_issue_that_is_not_due_yet(clock):
    issue, other = ScopingIssueFactory.create_batch(2)
    queued(issue, due_in=timedelta(minutes=5))
    held_back = queued(issue, due_in=-timedelta(minutes=1))
    of_another_issue = queued(other)

    assert held_back not in due_writes()
    assert due_writes() == [of_another_issue]


@pytest.mark.django_db
def test_a_write_is_not_held_back_by_a_later_write_or_by_earlier_ones_that_are_due_or_settled(clock):
    issue = ScopingIssueFactory()
    queued(issue, due_in=-timedelta(hours=1), status=WriteStatus.FAILED)
    queued(issue, due_in=-timedelta(hours=1), status=WriteStatus.DELIVERED)
    first = queued(issue)  # due this very moment
    second = queued(issue)
    queued(issue, due_in=timedelta(minutes=5))

    assert due_writes() == [first, second]


# --- Claiming by lease -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_claim_leases_the_oldest_due_writes_up_to_its_limit_to_this_run_alone(clock):
    writes = [queued(issue) for issue in ScopingIssueFactory.create_batch(3)]

    claimed = queue.claim(GitLabWrite, limit=2, lease=LEASE)

    assert claimed == writes[:2]
    assert [(w.attempts, w.next_attempt_at) for w in claimed] == [(1, timezone.now() + LEASE)] * 2
    assert len({w.lease_token for w in claimed}) == 1 and len(claimed[0].lease_token) == 32
    writes[2].refresh_from_db()
    assert (writes[2].lease_token, writes[2].attempts, writes[2].next_attempt_at) == ("", 0, timezone.now())
    assert queue.claim(GitLabWrite, limit=2, lease=LEASE) == [writes[2]]
    assert queue.claim(GitLabWrite, limit=2, lease=LEASE) == []


@pytest.mark.django_db
def test_each_claim_has_a_lease_token_of_its_own(clock):
    issue, other = ScopingIssueFactory.create_batch(2)
    queued(issue)
    queued(other)

    (first,) = queue.claim(GitLabWrite, limit=1, lease=LEASE)
    (second,) = queue.claim(GitLabWrite, limit=1, lease=LEASE)

    assert first.lease_token != second.lease_token


@pytest.mark.django_db
def test_a_claimed_write_brings_its_issue_without_another_query(django_assert_num_queries):
    queued(ScopingIssueFactory(iid=77))

    (write,) = queue.claim(GitLabWrite, limit=10, lease=LEASE)

    with django_assert_num_queries(0):
        assert write.issue.iid == 77


@pytest.mark.django_db
def test_a_claim_with_nothing_due_changes_nothing(clock, django_assert_num_queries):
    write = queued(ScopingIssueFactory(), due_in=timedelta(minutes=1))

    with django_assert_num_queries(1):
        assert queue.claim(GitLabWrite, limit=10, lease=LEASE) == []

    write.refresh_from_db()
    assert (write.attempts, write.lease_token) == (0, "")


def another_run_leases_first(writes: list[GitLabWrite]):
    """Runs as this run's first UPDATE is sent: another run leases `writes` just before it."""
    done = False

    def wrapper(execute, sql, params, many, context):
        nonlocal done
        if not done and sql.lstrip().upper().startswith("UPDATE"):
            done = True
            GitLabWrite.objects.filter(pk__in=[w.pk for w in writes]).update(
                lease_token="another-run", next_attempt_at=timezone.now() + LEASE, attempts=F("attempts") + 1
            )
        return execute(sql, params, many, context)

    return connection.execute_wrapper(wrapper)


@pytest.mark.django_db
def test_a_write_another_run_leased_first_is_not_claimed_again(clock):
    write = queued(ScopingIssueFactory())

    with another_run_leases_first([write]):
        assert queue.claim(GitLabWrite, limit=10, lease=LEASE) == []

    write.refresh_from_db()
    assert (write.lease_token, write.attempts) == ("another-run", 1)


@pytest.mark.django_db
def test_a_write_whose_earlier_write_another_run_holds_goes_back_at_once_uncounted(clock):
    issue, other = ScopingIssueFactory.create_batch(2)
    earlier = queued(issue)
    later = queued(issue)
    unrelated = queued(other)

    with another_run_leases_first([earlier]):
        claimed = queue.claim(GitLabWrite, limit=10, lease=LEASE)

    assert claimed == [unrelated]
    later.refresh_from_db()
    assert (later.lease_token, later.attempts, later.next_attempt_at) == ("", 0, timezone.now())
    earlier.refresh_from_db()
    assert earlier.lease_token == "another-run"


# --- Outcomes ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delivered_writes_say_when_and_lose_the_error_of_an_earlier_attempt(clock):
    first, second, untouched = (
        queued(issue, last_error="503 Service Unavailable") for issue in ScopingIssueFactory.create_batch(3)
    )

    assert queue.delivered([first, second]) == 2

    for write in (first, second):
        write.refresh_from_db()
        assert (write.status, write.delivered_at, write.last_error) == (
            WriteStatus.DELIVERED,
            timezone.now(),
            "",
        )
    untouched.refresh_from_db()
    assert (untouched.status, untouched.last_error) == (WriteStatus.PENDING, "503 Service Unavailable")


@pytest.mark.django_db
def test_a_failed_write_keeps_the_other_systems_reason(clock):
    write = queued(ScopingIssueFactory())

    assert queue.failed([write], error="Label 'x' does not exist") == 1

    write.refresh_from_db()
    assert (write.status, write.failed_at, write.last_error) == (
        WriteStatus.FAILED,
        timezone.now(),
        "Label 'x' does not exist",
    )


def test_marking_no_writes_touches_nothing_and_counts_zero():
    assert queue.delivered([]) == 0
    assert queue.failed([], error="refused") == 0


@pytest.mark.django_db
def test_a_write_put_back_to_retry_waits_its_delay_keeping_its_attempt_and_error(clock):
    queued(ScopingIssueFactory(), last_error="")
    (write,) = queue.claim(GitLabWrite, limit=1, lease=LEASE)

    queue.retry_later([write], error="GitLab is down (503)", delay=timedelta(seconds=45))

    write.refresh_from_db()
    assert (write.status, write.attempts, write.lease_token, write.last_error, write.next_attempt_at) == (
        WriteStatus.PENDING,
        1,
        "",
        "GitLab is down (503)",
        timezone.now() + timedelta(seconds=45),
    )


@pytest.mark.django_db
def test_retry_now_makes_waiting_writes_due_and_gives_failed_ones_another_try(clock):
    issues = ScopingIssueFactory.create_batch(4)
    waiting = queued(issues[0], due_in=timedelta(hours=1), attempts=3)
    leased = queued(issues[1], due_in=LEASE, lease_token="a-run", attempts=1)
    failed = queued(
        issues[2], status=WriteStatus.FAILED, failed_at=timezone.now(), attempts=2, last_error="refused"
    )
    delivered = queued(issues[3], status=WriteStatus.DELIVERED, delivered_at=timezone.now())

    clock.shift(timedelta(minutes=1))
    assert queue.retry_now(GitLabWrite) == 2

    for write in (waiting, leased, failed, delivered):
        write.refresh_from_db()
    assert (waiting.status, waiting.next_attempt_at, waiting.attempts) == (
        WriteStatus.PENDING,
        timezone.now(),
        3,
    )
    assert (leased.next_attempt_at, leased.lease_token) == (
        timezone.now() - timedelta(minutes=1) + LEASE,
        "a-run",
    )
    assert (failed.status, failed.next_attempt_at, failed.attempts, failed.failed_at) == (
        WriteStatus.PENDING,
        timezone.now(),
        0,
        None,
    )
    assert delivered.status == WriteStatus.DELIVERED


# --- Each record's latest write, as the API shows it -----------------------------------------------


def write_back_of(issue: ScopingIssue) -> dict | None:
    row = (
        ScopingIssue.objects.filter(pk=issue.pk)
        .annotate(**queue.latest_write_state(GitLabWrite))
        .values("write_status", "write_error", "write_since")
        .get()
    )
    return queue.write_back(row)


@pytest.mark.django_db
def test_a_record_never_written_shows_no_write_back(clock):
    queued(ScopingIssueFactory())  # another issue's write

    assert write_back_of(ScopingIssueFactory()) is None


@pytest.mark.django_db
def test_the_write_back_shown_is_that_of_the_newest_write_since_it_reached_its_status(clock):
    issue = ScopingIssueFactory()
    older = queued(issue)
    queue.failed([older], error="refused")
    clock.shift(timedelta(minutes=1))
    newest = queued(issue)

    assert write_back_of(issue) == {"status": "pending", "error": None, "since": newest.created_at}

    clock.shift(timedelta(minutes=1))
    queue.delivered([newest])
    assert write_back_of(issue) == {"status": "delivered", "error": None, "since": timezone.now()}

    clock.shift(timedelta(minutes=1))
    queue.failed([newest], error="Label 'x' does not exist")
    assert write_back_of(issue) == {
        "status": "failed",
        "error": "Label 'x' does not exist",
        "since": timezone.now(),
    }


# --- The drain loop --------------------------------------------------------------------------------------


class Courier:
    """A delivery function for `drain`: notes each batch it is offered, then settles it as `settle` says."""

    def __init__(self, settle=None) -> None:
        self.batches: list[list[int]] = []
        self.settle = settle or self.deliver

    def __call__(self, writes: list[GitLabWrite]) -> bool:
        self.batches.append([write.pk for write in writes])
        return self.settle(writes)

    @staticmethod
    def deliver(writes: list[GitLabWrite]) -> bool:
        queue.delivered(writes)
        return True


def still_pending() -> list[int]:
    return list(GitLabWrite.objects.filter(status=WriteStatus.PENDING).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_run_delivers_batch_by_batch_until_nothing_is_due():
    writes = [queued(issue).pk for issue in ScopingIssueFactory.create_batch(5)]
    courier = Courier()

    queue.drain(GitLabWrite, courier, batch=2)

    assert courier.batches == [writes[:2], writes[2:4], writes[4:]]
    assert still_pending() == []


@pytest.mark.django_db
def test_a_run_ends_at_once_when_the_other_system_is_unusable():
    writes = [queued(issue).pk for issue in ScopingIssueFactory.create_batch(5)]

    def down(batch):
        queue.retry_later(batch, error="503", delay=timedelta(minutes=1))
        return False

    courier = Courier(down)

    queue.drain(GitLabWrite, courier, batch=2)

    assert courier.batches == [writes[:2]]
    assert GitLabWrite.objects.filter(pk__in=writes[2:], attempts=0).count() == 3


def wait_a_moment_then_deliver():
    """Settles the first batch as 'try again in 0.3 s, the system is rate limiting', later ones as delivered."""
    calls = 0

    def settle(batch):
        nonlocal calls
        calls += 1
        if calls == 1:
            queue.retry_later(batch, error="429", delay=timedelta(seconds=0.3))
            return False
        return Courier.deliver(batch)

    return Courier(settle)


@pytest.mark.django_db
def test_with_a_budget_a_run_waits_for_writes_that_come_due_within_it():
    write = queued(ScopingIssueFactory())
    courier = wait_a_moment_then_deliver()

    queue.drain(GitLabWrite, courier, batch=10, budget=10)

    assert courier.batches == [[write.pk], [write.pk]]
    assert still_pending() == []


@pytest.mark.django_db
def test_without_a_budget_a_write_that_must_wait_is_left_for_a_later_run():
    write = queued(ScopingIssueFactory())
    courier = wait_a_moment_then_deliver()

    queue.drain(GitLabWrite, courier, batch=10)

    assert courier.batches == [[write.pk]]
    assert still_pending() == [write.pk]


@pytest.mark.django_db
def test_a_write_due_after_the_budget_ends_is_not_waited_for():
    write = queued(ScopingIssueFactory(), due_in=timedelta(seconds=3))
    courier = Courier()

    queue.drain(GitLabWrite, courier, batch=10, budget=1)

    assert courier.batches == []
    assert still_pending() == [write.pk]


@pytest.mark.django_db(transaction=True)
def test_with_a_budget_a_run_waits_for_writes_another_live_run_is_sending():
    # A manual `sync` beside the workers: a worker's run holds the write, renewing its lease while it lives.
    write = queued(ScopingIssueFactory())
    (claimed,) = queue.claim(GitLabWrite, limit=1, lease=timedelta(minutes=1))
    other_run = threading.Timer(0.5, the_other_run_delivers, args=([claimed],))
    other_run.start()
    started = time.monotonic()

    queue.drain(GitLabWrite, Courier(), batch=10, budget=10)
    left_pending = still_pending()

    other_run.join()
    assert left_pending == [], "the run gave up on a write that was delivered a moment later"
    assert time.monotonic() - started < 3
    assert GitLabWrite.objects.get(pk=write.pk).attempts == 1  # it was not sent again


def the_other_run_delivers(writes: list[GitLabWrite]) -> None:
    try:
        queue.delivered(writes)
    finally:
        connection.close()


def overdue_write_held_back(*, earlier_due_in: timedelta) -> list[int]:
    """An issue whose first write waits for its retry while a second, made later, is long overdue."""
    issue = ScopingIssueFactory()
    earlier = queued(issue, due_in=earlier_due_in, attempts=1, last_error="503")
    later = queued(issue, due_in=-timedelta(minutes=5))
    return [earlier.pk, later.pk]


@pytest.mark.django_db
def test_a_run_without_a_budget_ends_when_the_only_overdue_write_is_held_back():
    overdue_write_held_back(earlier_due_in=timedelta(seconds=1))
    courier = Courier()

    with CaptureQueriesContext(connection) as queries:
        queue.drain(GitLabWrite, courier, batch=10)

    assert courier.batches == []
    assert len(queries) == 2  # one look for due writes, one for the next to come due: no busy loop


@pytest.mark.django_db
def test_with_a_budget_a_held_back_write_goes_right_after_the_write_it_waits_for():
    writes = overdue_write_held_back(earlier_due_in=timedelta(seconds=1))
    courier = Courier()

    with CaptureQueriesContext(connection) as queries:
        queue.drain(GitLabWrite, courier, batch=10, budget=10)

    assert courier.batches == [writes]
    assert still_pending() == []
    assert len(queries) < 20  # it slept until the first write came due instead of asking again and again


# --- Starting delivery runs ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_writes_committed_in_one_transaction_start_one_delivery_run_per_system(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        queue.deliver_soon("gitlab")
        queue.deliver_soon("salesforce")
        queue.deliver_soon("gitlab")

    assert [callback.args for callback in callbacks] == [("gitlab",), ("salesforce",)]


@pytest.mark.django_db
def test_while_deliveries_are_deferred_no_run_starts_until_the_outermost_deferral_ends(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as deferred, queue.deliveries_deferred():
        with queue.deliveries_deferred():
            queue.deliver_soon("gitlab")
        queue.deliver_soon("salesforce")
    with django_capture_on_commit_callbacks() as afterwards:
        queue.deliver_soon("gitlab")

    assert deferred == []
    assert [callback.args for callback in afterwards] == [("gitlab",)]


@pytest.fixture
def broker():
    """Tasks go to a broker (kombu's in-memory one) instead of running in-process; yields its gitlab queue's size."""
    saved = {key: celery_app.conf[key] for key in ("broker_url", "broker_write_url", "task_always_eager")}
    celery_app.conf.update(broker_url="memory://", broker_write_url="memory://", task_always_eager=False)
    celery_app.amqp._producer_pool = None
    MemoryChannel.queues.clear()
    queue.forget_window("gitlab")
    try:
        yield lambda: MemoryChannel.queues["gitlab"].qsize() if "gitlab" in MemoryChannel.queues else 0
    finally:
        queue.forget_window("gitlab")
        MemoryChannel.queues.clear()
        celery_app.conf.update(saved)
        celery_app.amqp._producer_pool = None


@pytest.fixture
def queue_warnings() -> Iterator[list[str]]:
    """What psplan.queue warns about. Not caplog: Celery's Django set-up, run as a delivery starts,
    configures logging anew and drops the handler caplog puts on the root logger."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("psplan.queue")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def commit_a_write() -> None:
    with transaction.atomic():
        queue.deliver_soon("gitlab")


def test_writes_committed_within_a_few_seconds_share_one_delivery_task(broker, transactional_db):
    commit_a_write()
    commit_a_write()
    assert broker() == 1

    queue.forget_window("gitlab")  # the task starts: later writes need a run of their own
    commit_a_write()
    assert broker() == 2


def test_with_the_cache_down_every_committed_write_starts_a_delivery_task(
    broker, transactional_db, settings, queue_warnings
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }

    commit_a_write()
    commit_a_write()
    queue.forget_window("gitlab")  # a delivery run starts

    assert broker() == 2
    assert queue_warnings == ["Cache unavailable; delivery runs may not be gathered"]


def test_with_the_broker_down_a_committed_write_waits_for_the_sweep_and_the_next_one_tries_again(
    broker, transactional_db, queue_warnings
):
    celery_app.conf.update(broker_url="redis://127.0.0.1:9/0", broker_write_url="redis://127.0.0.1:9/0")
    celery_app.amqp._producer_pool = None

    commit_a_write()
    commit_a_write()

    assert [message.split(" (")[0] for message in queue_warnings] == ["Could not queue gitlab delivery"] * 2
