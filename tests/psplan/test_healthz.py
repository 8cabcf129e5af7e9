from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_reports_database_and_in_process_tasks_without_sign_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"].startswith("not configured")
    assert body["gitlab_sync"] == "disabled"


@pytest.mark.django_db
def test_healthz_reports_a_reachable_broker(client, settings, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    assert client.get("/healthz").json()["broker"] == "ok"


@pytest.mark.django_db
def test_healthz_is_degraded_with_503_when_the_broker_is_unreachable(client, settings):
    closed_port = _closed_port()
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["broker"].startswith("error")
    assert "hunter2" not in response.content.decode()
    assert str(closed_port) not in response.content.decode()


@pytest.mark.django_db
def test_healthz_shows_when_each_sync_last_succeeded(client):
    finished = timezone.now()
    SyncRun.objects.create(kind=SyncKind.GITLAB_FULL, status=SyncStatus.SUCCEEDED, finished_at=finished)
    SyncRun.objects.create(kind=SyncKind.SALESFORCE_FULL, status=SyncStatus.FAILED, finished_at=finished)
    assert client.get("/healthz").json()["last_successful_sync"] == {"gitlab_full": finished.isoformat()}


@pytest.mark.django_db
def test_healthz_gives_the_age_of_each_system_s_latest_successful_sync(client):
    now = timezone.now()
    for kind, minutes_ago in [
        (SyncKind.GITLAB_FULL, 180),
        (SyncKind.GITLAB_INCREMENTAL, 5),
        (SyncKind.RULES, 1),
    ]:
        SyncRun.objects.create(
            kind=kind, status=SyncStatus.SUCCEEDED, finished_at=now - timedelta(minutes=minutes_ago)
        )
    SyncRun.objects.create(kind=SyncKind.SALESFORCE_INCREMENTAL, status=SyncStatus.FAILED, finished_at=now)
    with time_machine.travel(now, tick=False):
        ages = client.get("/healthz").json()["seconds_since_last_successful_sync"]
    assert ages == {"gitlab": 300, "salesforce": None}


def test_healthz_is_degraded_with_503_when_the_database_is_unreachable():
    # A process of its own, whose DATABASE_URL points at a port where no PostgreSQL listens.
    program = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/healthz'); print(json.dumps([r.status_code, r.json()]))"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://psplan:secret-password@127.0.0.1:{_closed_port()}/psplan",
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    status, body = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503
    assert (body["status"], body["database"]) == ("degraded", "error: OperationalError")
    assert "secret-password" not in done.stdout


@pytest.mark.django_db
def test_healthz_never_shows_secrets(client, settings):
    settings.GITLAB_TOKEN = "glpat-very-secret"
    settings.SALESFORCE_ACCESS_TOKEN = "00Dsecret!token"
    body = client.get("/healthz").content.decode()
    assert "very-secret" not in body and "secret!token" not in body and settings.SECRET_KEY not in body


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
