"""Processes killed with SIGKILL mid-work: nothing lost, nothing done twice, the next one takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from psplan.queue import WriteStatus
from scoping.gitlab_sync import sync_issues
from scoping.models import GitLabWrite, ScopingIssue, SyncLock
from scoping.sync import run_sync
from scoping.write_back import deliver_gitlab_writes
from tests.conftest import database_url
from tests.scoping.conftest import GITLAB_PROJECT, GITLAB_PROJECT_ID, GITLAB_TOKEN, SCOPING, recently, seed

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
LOCK_TTL = 4  # seconds: a dead holder's lock is free this long after its last beat


@pytest.fixture
def short_leases(settings):
    settings.PSPLAN_SYNC_LOCK_TTL = LOCK_TTL


def start(gitlab_on, code: str) -> subprocess.Popen:
    """A separate Python process working on the test database and the GitLab stand-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "SALESFORCE_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(),
        GITLAB_URL=gitlab_on.url,
        GITLAB_TOKEN=GITLAB_TOKEN,
        GITLAB_PROJECT=GITLAB_PROJECT,
        GITLAB_SCOPING_LABEL=SCOPING,
        GITLAB_MAX_RETRIES="0",
        PSPLAN_SYNC_LOCK_TTL=str(LOCK_TTL),
    )
    script = f"import django; django.setup(); {code}"
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)


def wait_for(condition, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_sync_killed_mid_run_is_taken_over_by_the_next_within_the_lock_lifetime(gitlab_on, short_leases):
    seed(gitlab_on, 300)
    gitlab_on.latency = 0.3  # three pages: the sync is still reading when it is killed
    process = start(gitlab_on, "from scoping.sync import run_sync; run_sync(gitlab=True, salesforce=False)")
    wait_for(lambda: SyncLock.objects.filter(expires_at__gt=timezone.now()).exists())
    wait_for(lambda: SyncRun.objects.filter(status=SyncStatus.RUNNING).exists())

    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = time.monotonic()

    assert run_sync(gitlab=True, salesforce=False).locked_out  # its lease has not run out yet
    gitlab_on.latency = 0
    wait_for(lambda: not run_sync(gitlab=True, salesforce=False).locked_out, timeout=LOCK_TTL * 3)
    assert time.monotonic() - killed_at <= LOCK_TTL * 2

    assert ScopingIssue.objects.count() == 300
    dead = SyncRun.objects.get(kind=SyncKind.GITLAB_FULL, status=SyncStatus.ABANDONED)
    assert "stopped" in dead.error and dead.finished_at is not None
    assert not SyncRun.objects.filter(status=SyncStatus.RUNNING).exists()


def test_a_delivery_killed_between_the_put_and_the_comment_posts_the_comment_once(gitlab_on):
    iid = seed(gitlab_on, 1, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])[0]
    sync_issues(full=True)
    write = GitLabWrite.objects.create(
        issue=ScopingIssue.objects.get(),
        intent={"stage": "Closed_Lost", "state": "closed"},
        note="Closed as lost: no activity for 2 months.",
        source="rule",
    )
    process = start(
        gitlab_on, "from scoping.write_back import deliver_gitlab_writes; deliver_gitlab_writes()"
    )
    gitlab_on.before_next(
        lambda: process.send_signal(signal.SIGKILL),
        method="POST",
        path=f"/api/v4/projects/{GITLAB_PROJECT_ID}/issues/{iid}/notes",
        then_drop=True,
    )

    assert process.wait(30) == -signal.SIGKILL
    assert gitlab_on.issue(iid)["state"] == "closed"  # the PUT landed
    assert [n for n in gitlab_on.notes(iid) if not n["system"]] == []
    write.refresh_from_db()
    assert write.status == WriteStatus.PENDING  # still leased to the dead run

    GitLabWrite.objects.update(next_attempt_at=timezone.now())  # its lease runs out
    assert deliver_gitlab_writes()["delivered"] == 1

    assert [n["body"] for n in gitlab_on.notes(iid) if not n["system"]] == [write.note]
    assert gitlab_on.count_requests("PUT") == 1
    assert SyncRun.objects.get(kind=SyncKind.GITLAB_OUTBOX, status=SyncStatus.SUCCEEDED)


def _queue_stage_moves(gitlab_on, count: int) -> list[int]:
    iids = seed(gitlab_on, count, start=recently(days=20), labels=[SCOPING, "proposal::Strawman_WIP"])
    sync_issues(full=True)
    for issue in ScopingIssue.objects.all():
        GitLabWrite.objects.create(issue=issue, intent={"stage": "SOW_WIP"}, source="api")
    return iids


DELIVER = "from scoping.write_back import deliver_gitlab_writes; deliver_gitlab_writes()"


def test_a_delivery_killed_mid_batch_frees_its_writes_within_the_lock_lifetime(gitlab_on, short_leases):
    iids = _queue_stage_moves(gitlab_on, 3)
    process = start(gitlab_on, DELIVER)
    gitlab_on.before_next(lambda: process.send_signal(signal.SIGKILL), method="PUT")  # the PUT still lands

    assert process.wait(30) == -signal.SIGKILL
    killed_at = time.monotonic()
    wait_for(lambda: deliver_gitlab_writes()["delivered"] > 0, timeout=LOCK_TTL * 3)

    assert time.monotonic() - killed_at <= LOCK_TTL * 2
    assert set(GitLabWrite.objects.values_list("status", flat=True)) == {WriteStatus.DELIVERED}
    assert all("proposal::SOW_WIP" in gitlab_on.issue(iid)["labels"] for iid in iids)
    assert gitlab_on.count_requests("PUT") == 3  # the one that landed before the kill is not sent again


def test_a_slow_delivery_keeps_its_writes_past_the_lock_lifetime_while_it_lives(gitlab_on, short_leases):
    _queue_stage_moves(gitlab_on, 3)
    gitlab_on.latency = 1.5  # a list request and three PUTs: longer than two lock lifetimes
    process = start(gitlab_on, DELIVER)
    wait_for(lambda: GitLabWrite.objects.exclude(lease_token="").exists())

    while process.poll() is None:
        assert deliver_gitlab_writes()["delivered"] == 0, "another run took writes from a live one"
        time.sleep(0.5)

    assert process.returncode == 0
    assert set(GitLabWrite.objects.values_list("status", flat=True)) == {WriteStatus.DELIVERED}
    assert gitlab_on.count_requests("PUT") == 3
