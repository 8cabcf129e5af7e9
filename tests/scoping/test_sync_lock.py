"""The sync lock: one sync at a time across processes; a dead holder's lease runs out."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping.models import SyncLock
from scoping.sync import claim_lock, lock_holder, release_lock, run_sync, sync_lock
from tests.scoping.conftest import seed


@pytest.mark.django_db
def test_the_lock_is_held_by_one_claimant_at_a_time():
    first = claim_lock(ttl=60)
    second = claim_lock(ttl=60)

    assert first is not None
    assert second is None
    assert lock_holder().owner == first.owner

    release_lock(first)
    assert lock_holder() is None
    assert claim_lock(ttl=60) is not None


@pytest.mark.django_db
def test_a_lock_whose_holder_died_is_taken_over_once_its_lease_runs_out():
    dead = claim_lock(ttl=60)
    SyncLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    taker = claim_lock(ttl=60)

    assert taker is not None
    release_lock(dead)  # the late holder must not free the new holder's lock
    assert lock_holder().owner == taker.owner


@pytest.mark.django_db
def test_renewing_a_lease_pushes_its_expiry_out():
    lease = claim_lock(ttl=60)
    SyncLock.objects.update(expires_at=timezone.now() + timedelta(seconds=5))

    lease.renew()

    assert SyncLock.objects.get().expires_at > timezone.now() + timedelta(seconds=50)


@pytest.mark.django_db(transaction=True)
def test_a_held_lock_is_renewed_by_the_heartbeat_while_its_sync_runs(settings):
    settings.PSPLAN_SYNC_LOCK_TTL = 4  # a beat every second
    with sync_lock() as lease:
        SyncLock.objects.update(expires_at=timezone.now() + timedelta(seconds=1))
        time.sleep(2.5)
        assert SyncLock.objects.get(owner=lease.owner).expires_at > timezone.now() + timedelta(seconds=2)


@pytest.mark.django_db
def test_the_lock_is_freed_when_the_sync_fails(gitlab_on):
    gitlab_on.fail_next(500, times=100)

    report = run_sync(gitlab=True, salesforce=False, rules=False)

    assert report.failures
    assert lock_holder() is None


@pytest.mark.django_db(transaction=True)
def test_a_second_sync_started_while_the_first_runs_is_skipped(gitlab_on):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's in-memory test database cannot be written from two threads at once")
    seed(gitlab_on, 300)
    gitlab_on.latency = 0.2  # three pages: the first sync holds the lock for at least 0.6 s
    first_started = threading.Event()
    gitlab_on.before_next(first_started.set, method="GET")
    results = {}

    def first() -> None:
        results["first"] = run_sync(full=True, gitlab=True, salesforce=False, rules=False)
        connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_started.wait(10)
    second = run_sync(gitlab=True, salesforce=False, rules=False)
    thread.join(20)

    assert results["first"].ok
    assert second.locked_out
    skipped = SyncRun.objects.get(status=SyncStatus.SKIPPED)
    assert skipped.kind == SyncKind.GITLAB_INCREMENTAL
    assert "another sync is running" in skipped.error
    assert SyncRun.objects.filter(status=SyncStatus.SUCCEEDED).count() == 1


@pytest.mark.django_db
def test_sync_lock_yields_nothing_when_held_elsewhere():
    with sync_lock() as outer, sync_lock() as inner:
        assert outer is not None
        assert inner is None
    assert lock_holder() is None
