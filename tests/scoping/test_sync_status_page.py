"""The sync status page: recent runs, counts, errors, the age of each last success, the backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import strip_tags

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping.choices import WriteStatus
from scoping.models import GitLabWrite, WebhookDelivery
from scoping.sync import sync_lock
from tests.factories import ScopingIssueFactory

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


def test_the_page_shows_the_write_back_backlog_and_failed_writes(reader_client):
    issue = ScopingIssueFactory(iid=77)
    GitLabWrite.objects.create(issue=issue, add_labels=["proposal::SOW_WIP"])
    GitLabWrite.objects.create(
        issue=issue,
        add_labels=["urgent"],
        status=WriteStatus.FAILED,
        last_error="Label 'urgent' does not exist in the GitLab project",
    )
    WebhookDelivery.objects.create(delivery_key="k", event="Issue Hook", payload={})

    page = strip_tags(reader_client.get(URL).content.decode())

    assert "1 waiting, 1 failed" in page
    assert "#77" in page
    assert "Label &#x27;urgent&#x27; does not exist" in page
    assert "Last delivery now" in page


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
