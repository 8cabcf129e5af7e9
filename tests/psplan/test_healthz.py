from __future__ import annotations

import socket

import pytest
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun


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
def test_healthz_reports_an_unreachable_broker_without_its_address(client, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    response = client.get("/healthz")
    assert response.status_code == 200
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
def test_healthz_never_shows_secrets(client, settings):
    settings.GITLAB_TOKEN = "glpat-very-secret"
    settings.SALESFORCE_ACCESS_TOKEN = "00Dsecret!token"
    body = client.get("/healthz").content.decode()
    assert "very-secret" not in body and "secret!token" not in body and settings.SECRET_KEY not in body
