"""Celery wiring: task options, the beat schedule, in-process tasks, and a real worker on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.db import transaction
from django.utils import timezone
from kombu import pools
from redis import Redis

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from psplan import queue
from psplan.celery import app as celery_app
from psplan.queue import WriteStatus
from scoping import services, tasks
from scoping.choices import Stage
from scoping.models import GitLabWrite, ScopingIssue, WebhookDelivery
from scoping.sync import sync_lock
from tests.conftest import database_url
from tests.factories import ScopingIssueFactory
from tests.scoping.conftest import GITLAB_PROJECT, GITLAB_TOKEN, SCOPING, WEBHOOK_SECRET, seed

ROOT = Path(__file__).resolve().parents[2]
TASKS = [
    tasks.sync_all_systems,
    tasks.deliver_gitlab_writes,
    tasks.process_webhook_delivery,
    tasks.prune_webhook_deliveries,
]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_every_task_is_acknowledged_late_and_requeued_if_its_worker_dies(task):
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)


def test_the_beat_runs_incremental_syncs_every_5_minutes_a_full_one_nightly_and_delivers_every_minute(
    settings,
):
    schedule = settings.CELERY_BEAT_SCHEDULE
    by_task = {(e["task"], e.get("kwargs", {}).get("full")): e["schedule"] for e in schedule.values()}

    assert by_task[("scoping.tasks.sync_all_systems", False)] == timedelta(minutes=5)
    assert isinstance(by_task[("scoping.tasks.sync_all_systems", True)], crontab)
    assert by_task[("scoping.tasks.deliver_gitlab_writes", None)] == timedelta(minutes=1)
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    assert all(entry["task"] in celery_app.tasks for entry in schedule.values())


@pytest.mark.django_db
def test_without_a_broker_a_task_runs_in_process(gitlab_on):
    seed(gitlab_on, 3)

    tasks.sync_all_systems.delay(full=True)

    assert ScopingIssue.objects.count() == 3
    assert set(SyncRun.objects.values_list("kind", "status")) == {
        (SyncKind.GITLAB_FULL, SyncStatus.SUCCEEDED),
        (SyncKind.RULES, SyncStatus.SUCCEEDED),
    }


@pytest.mark.django_db
def test_a_periodic_sync_while_another_runs_records_that_it_skipped(gitlab_on):
    with sync_lock():
        tasks.sync_all_systems.delay(full=False)

    run = SyncRun.objects.get()
    assert (run.kind, run.status) == (SyncKind.GITLAB_INCREMENTAL, SyncStatus.SKIPPED)
    assert run.error.startswith("Skipped: another sync is running")
    assert gitlab_on.request_count == 0


@pytest.mark.django_db
def test_delivering_in_process_tries_gitlab_once_and_leaves_retries_to_the_queue(gitlab_on):
    iid = seed(gitlab_on, 1)[0]
    tasks.sync_all_systems.delay(full=True)
    services.set_issue_stage(issue=ScopingIssue.objects.get(iid=iid), stage=Stage.SOW_WIP, actor=None)
    gitlab_on.reset_requests()
    gitlab_on.fail_next(503, times=100)

    tasks.deliver_gitlab_writes.delay()

    assert gitlab_on.request_count == 1
    write = GitLabWrite.objects.get()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)


@pytest.mark.django_db
def test_processed_webhook_deliveries_are_forgotten_after_30_days(gitlab_on):
    old, recent = timezone.now() - timedelta(days=31), timezone.now() - timedelta(days=1)
    WebhookDelivery.objects.create(delivery_key="old", event="Issue Hook", payload={}, processed_at=old)
    WebhookDelivery.objects.create(delivery_key="new", event="Issue Hook", payload={}, processed_at=recent)
    WebhookDelivery.objects.create(delivery_key="waiting", event="Issue Hook", payload={})

    tasks.prune_webhook_deliveries.delay()

    assert set(WebhookDelivery.objects.values_list("delivery_key", flat=True)) == {"new", "waiting"}


@pytest.mark.django_db
def test_a_webhook_delivery_processed_twice_is_applied_once(gitlab_on):
    iid = seed(gitlab_on, 1)[0]
    delivery = WebhookDelivery.objects.create(
        delivery_key="k", event="Issue Hook", payload=gitlab_on.issue_hook(iid, user="an.em")
    )

    tasks.process_webhook_delivery.delay(delivery.pk)
    tasks.process_webhook_delivery.delay(delivery.pk)

    assert ScopingIssue.objects.count() == 1
    assert gitlab_on.count_requests("GET") == 1


# --- A real worker -----------------------------------------------------------------------------


def _isolated_redis(redis_url: str) -> str:
    """A Redis database of its own per xdist worker, so parallel test runs never take each other's tasks."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = 1 + int(worker.removeprefix("gw") or 0) % 15
    return f"{redis_url.rsplit('/', 1)[0]}/{index}"


@pytest.fixture
def broker(redis_url) -> Iterator[str]:
    """This process sends tasks to Redis, as production does, instead of running them in-process."""
    url = _isolated_redis(redis_url)
    saved = {key: celery_app.conf[key] for key in ("broker_url", "broker_write_url", "task_always_eager")}
    celery_app.conf.update(broker_url=url, broker_write_url=url, task_always_eager=False)
    celery_app.amqp._producer_pool = None
    try:
        yield url
    finally:
        celery_app.conf.update(saved)
        celery_app.amqp._producer_pool = None
        if celery_app._pool is not None:
            celery_app._pool.force_close_all()
            celery_app._pool = None
        pools.reset()  # kombu's own registry would hand the next test a producer on the closed pool


@pytest.fixture
def worker(broker, gitlab_on, transactional_db, tmp_path) -> Iterator[Path]:
    """`celery -A psplan worker` in a subprocess, on the test database; yields its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "SALESFORCE_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=broker,
        GITLAB_URL=gitlab_on.url,
        GITLAB_TOKEN=GITLAB_TOKEN,
        GITLAB_PROJECT=GITLAB_PROJECT,
        GITLAB_SCOPING_LABEL=SCOPING,
        GITLAB_MAX_RETRIES="1",
        GITLAB_BACKOFF_BASE="0.01",
        GITLAB_BACKOFF_CAP="0.05",
    )
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "psplan", "worker", "--pool=solo", "--loglevel=INFO"]
    command += ["--queues=celery,sync,gitlab,salesforce"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--purge"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "ready." in log.read_text() or process.poll() is not None, what="the worker")
        assert process.poll() is None, log.read_text()
        yield log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(condition: Callable[[], object], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.services
def test_a_real_worker_on_redis_syncs_delivers_edits_and_applies_webhooks(
    worker, gitlab_on, client, settings
):
    seed(gitlab_on, 150)

    tasks.sync_all_systems.delay(full=True)

    _wait_for(lambda: SyncRun.objects.filter(kind=SyncKind.RULES).exists(), what="the sync")
    assert ScopingIssue.objects.count() == 150
    assert SyncRun.objects.get(kind=SyncKind.GITLAB_FULL).counts["created"] == 150

    # An EM's edit commits, and the worker sends it to GitLab.
    issue = ScopingIssue.objects.get(iid=1)
    services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=None)
    _wait_for(lambda: GitLabWrite.objects.filter(status=WriteStatus.DELIVERED).exists(), what="the write")
    assert "proposal::SOW_WIP" in gitlab_on.issue(1)["labels"]

    # A person edits on GitLab; the webhook is answered by queueing, and the worker applies it.
    gitlab_on.edit_issue(2, title="Renamed on GitLab")
    response = client.post(
        "/webhooks/gitlab/",
        json.dumps(gitlab_on.issue_hook(2, user="an.em")),
        content_type="application/json",
        headers={
            "X-Gitlab-Event": "Issue Hook",
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event-UUID": "u1",
        },
    )
    assert response.json() == {"status": "queued"}
    _wait_for(lambda: ScopingIssue.objects.filter(iid=2, title="Renamed on GitLab").exists(), what="the hook")
    assert "ready." in worker.read_text()


@pytest.mark.services
def test_a_worker_keeps_logging_its_runs_after_a_sync_hands_deliveries_over(worker, gitlab_on):
    seed(gitlab_on, 3)

    # Each sync ends by queueing the deliveries; the second sync's lines must still reach the log.
    for _ in range(2):
        tasks.sync_all_systems.delay(full=True)

    _wait_for(lambda: SyncRun.objects.filter(kind=SyncKind.RULES).count() == 2, what="two syncs")
    _wait_for(
        lambda: worker.read_text().count("sync_run kind=rules status=succeeded") == 2,
        what="the second sync's line in the worker's log",
        timeout=10,
    )


# --- Enqueuing deliveries ----------------------------------------------------------------------


@pytest.fixture
def queue_window():
    """The gathering window lives in the cache, which outlives a test's database."""
    for system in ("gitlab", "salesforce"):
        queue.forget_window(system)
    yield
    for system in ("gitlab", "salesforce"):
        queue.forget_window(system)


@pytest.mark.services
def test_edits_made_in_one_transaction_or_a_short_window_start_one_delivery_task(
    broker, transactional_db, queue_window
):
    issues = ScopingIssueFactory.create_batch(3, labels=[SCOPING, "Open"])
    redis = Redis.from_url(broker)
    redis.delete("gitlab")

    with transaction.atomic():
        for issue in issues:
            services.set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=None)
    for issue in issues:  # three more transactions, within the window
        services.set_issue_em_status(issue=issue, em_status="ToDo", actor=None)

    assert GitLabWrite.objects.count() == 6
    assert redis.llen("gitlab") == 1
    queue.forget_window("gitlab")  # the task starts: the next edit needs a run of its own
    services.set_issue_em_status(issue=issues[0], em_status="Waiting", actor=None)
    assert redis.llen("gitlab") == 2


@pytest.mark.services
def test_with_the_broker_down_an_edit_is_kept_and_the_api_answers_pending(
    broker, transactional_db, queue_window, em_client
):
    celery_app.conf.update(broker_url="redis://127.0.0.1:9/0", broker_write_url="redis://127.0.0.1:9/0")
    celery_app.amqp._producer_pool = None
    issue = ScopingIssueFactory(labels=[SCOPING, "Open"])

    response = em_client.patch(
        f"/api/v1/scoping-issues/{issue.iid}/",
        json.dumps({"stage": "SOW_WIP"}),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["stage"] == "SOW_WIP"
    assert response.json()["write_back"]["status"] == "pending"
    assert GitLabWrite.objects.get().status == WriteStatus.PENDING


@pytest.mark.services
def test_with_the_broker_down_an_edit_answers_without_waiting_for_it(
    broker, transactional_db, queue_window, em_client
):
    celery_app.conf.update(broker_url="redis://127.0.0.1:9/0", broker_write_url="redis://127.0.0.1:9/0")
    celery_app.amqp._producer_pool = None
    issue = ScopingIssueFactory(labels=[SCOPING, "Open"])

    started = time.monotonic()
    response = em_client.patch(
        f"/api/v1/scoping-issues/{issue.iid}/",
        json.dumps({"em_status": "Waiting"}),
        content_type="application/json",
    )
    waited = time.monotonic() - started

    assert response.status_code == 200, response.content
    # kombu's default reconnection held each such request about six seconds: a few EMs editing
    # while Redis is down would tie up every web worker.
    assert waited < 2, f"the edit waited {waited:.1f} s for a broker that is down"
