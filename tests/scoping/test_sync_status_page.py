"""The sync status page: recent runs, counts, errors, the age of each last success, the backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SalesforceWrite, SyncRun
from psplan.queue import WriteStatus
from scoping.models import GitLabWrite, WebhookDelivery
from scoping.sync import sync_lock
from tests.factories import OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
URL = "/sync/"


def test_the_page_lists_runs_with_their_counts_and_errors(reader_client):
    now = timezone.now()
    SyncRun.objects.create(
        kind=SyncKind.GITLAB_INCREMENTAL,
        status=SyncStatus.SUCCEEDED,
        started_at=now - timedelta(hours=3, seconds=4),
        finished_at=now - timedelta(hours=3),
        counts={"fetched": 12, "updated": 3},
    )
    SyncRun.objects.create(
        kind=SyncKind.GITLAB_INCREMENTAL,
        status=SyncStatus.FAILED,
        finished_at=now,
        error="GitLab at https://gitlab.example.com answered 502 (6 attempts)",
    )

    page = strip_tags(reader_client.get(URL).content.decode())

    assert "fetched: 12, updated: 3" in page
    assert "answered 502 (6 attempts)" in page
    assert "Last success 3\xa0hours ago" in page
    assert page.count("Never succeeded") == len(SyncKind) - 1


def test_the_page_shows_both_write_back_queues_with_their_failures(reader_client):
    issue = ScopingIssueFactory(iid=77)
    GitLabWrite.objects.create(issue=issue, intent={"stage": "SOW_WIP"})
    GitLabWrite.objects.create(
        issue=issue,
        intent={"em_status": "Waiting"},
        status=WriteStatus.FAILED,
        attempts=1,
        last_error="Label 'EM_Status::Waiting' does not exist in the GitLab project",
    )
    SalesforceWrite.objects.create(
        opportunity=OpportunityFactory(name="Acme - Migration"),
        changes={"em_confidence": "Red"},
        attempts=2,
        last_error="Salesforce unavailable, will retry: HTTP 503",
    )
    WebhookDelivery.objects.create(delivery_key="k", event="Issue Hook", payload={})

    page = strip_tags(reader_client.get(URL).content.decode())

    assert "GitLab write-back queue1 waiting, 1 failed" in page
    assert "Salesforce write-back queue1 waiting, 0 failed" in page
    assert "#77" in page and "em status Waiting" in page
    assert "Label &#x27;EM_Status::Waiting&#x27; does not exist" in page
    assert "Acme - Migration" in page and "HTTP 503" in page
    assert "Last delivery now" in page
    assert "Retry now" not in page  # staff only


def test_staff_retry_now_sends_waiting_writes_and_gives_failed_ones_another_try(client, admin_user, reader):
    issue = ScopingIssueFactory()
    later = timezone.now() + timedelta(hours=1)
    waiting = GitLabWrite.objects.create(issue=issue, intent={"stage": "SOW_WIP"}, next_attempt_at=later)
    failed = GitLabWrite.objects.create(issue=issue, intent={}, status=WriteStatus.FAILED, attempts=3)

    client.force_login(reader)
    assert client.post(reverse("scoping:retry-writes")).status_code == 403
    client.force_login(admin_user)
    assert "Retry now" in client.get(URL).content.decode()
    response = client.post(reverse("scoping:retry-writes"), follow=True)

    assert "2 write(s) queued for delivery now." in response.content.decode()
    waiting.refresh_from_db()
    failed.refresh_from_db()
    assert waiting.next_attempt_at <= timezone.now()
    assert (failed.status, failed.attempts) == (WriteStatus.PENDING, 0)


def test_the_page_warns_when_a_configured_system_has_not_synced_for_half_an_hour(reader_client, settings):
    settings.GITLAB_ENABLED, settings.SALESFORCE_ENABLED = True, True
    now = timezone.now()
    SyncRun.objects.create(kind=SyncKind.GITLAB_INCREMENTAL, status=SyncStatus.SUCCEEDED, finished_at=now)
    SyncRun.objects.create(
        kind=SyncKind.SALESFORCE_INCREMENTAL,
        status=SyncStatus.SUCCEEDED,
        finished_at=now - timedelta(minutes=31),
    )

    page = reader_client.get(URL).content.decode()

    assert "Salesforce has not synced successfully for more than 30 minutes" in page
    assert "GitLab has not synced" not in page


def test_the_page_says_when_a_sync_is_running(reader_client):
    with sync_lock():
        page = reader_client.get(URL).content.decode()

    assert "A sync is running" in page


def test_the_page_costs_the_same_queries_whatever_the_number_of_runs(reader_client):
    issue = ScopingIssueFactory()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert reader_client.get(URL).status_code == 200
        return len(captured)

    SyncRun.objects.create(kind=SyncKind.GITLAB_FULL, status=SyncStatus.SUCCEEDED, finished_at=timezone.now())
    GitLabWrite.objects.create(issue=issue, status=WriteStatus.FAILED, last_error="x")
    one = queries()
    for _ in range(49):
        SyncRun.objects.create(kind=SyncKind.GITLAB_FULL, status=SyncStatus.FAILED, error="boom")
        GitLabWrite.objects.create(issue=issue, status=WriteStatus.FAILED, last_error="x")

    assert queries() == one


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response.url.startswith("/login/")
