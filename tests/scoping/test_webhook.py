"""POST /webhooks/gitlab/ exactly as CONTRACT.md describes it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scoping import services
from scoping.gitlab_sync import sync_issues
from scoping.models import GitLabWrite, ScopingIssue, WebhookDelivery
from scoping.webhooks import apply_waiting_deliveries
from scoping.write_back import deliver_gitlab_writes
from tests.scoping.conftest import GITLAB_PROJECT_ID, SCOPING, WEBHOOK_SECRET, recently, seed

pytestmark = pytest.mark.django_db
URL = "/webhooks/gitlab/"
ISSUES = f"/api/v4/projects/{GITLAB_PROJECT_ID}/issues"


def post(client, payload, *, event="Issue Hook", token=WEBHOOK_SECRET, uuid="delivery-1", raw=None):
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": uuid}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    body = raw if raw is not None else json.dumps(payload)
    return client.post(URL, body, content_type="application/json", headers=headers)


@pytest.fixture
def mirrored(gitlab_on, gitlab_client):
    """One scoping issue, mirrored, last touched by a person ten days ago."""
    iid = seed(gitlab_on, 1, start=recently(days=10))[0]
    sync_issues(full=True, client=gitlab_client)
    gitlab_on.reset_requests()
    return ScopingIssue.objects.get(iid=iid)


@pytest.fixture
def run_queued(django_capture_on_commit_callbacks):
    """Run what each request queues (in-process, as without a broker) as soon as it commits."""
    queued: list = []

    def post_and_run(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post(*args, **kwargs)
        queued.extend(callbacks)
        return response

    post_and_run.queued = queued  # type: ignore[attr-defined]
    return post_and_run


def test_the_webhook_url_is_the_one_in_the_contract():
    assert reverse("scoping:gitlab-webhook") == URL


def test_a_wrong_token_gets_401_and_nothing_is_stored(client, gitlab_on, mirrored):
    response = post(client, gitlab_on.issue_hook(mirrored.iid), token="wrong")

    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_a_missing_token_gets_401(client, gitlab_on, mirrored):
    assert post(client, gitlab_on.issue_hook(mirrored.iid), token=None).status_code == 401


def test_without_a_configured_secret_every_call_gets_401(client, settings, gitlab_on, mirrored):
    settings.GITLAB_WEBHOOK_SECRET = ""

    assert post(client, gitlab_on.issue_hook(mirrored.iid), token="").status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_malformed_json_gets_400(client, gitlab_on):
    assert post(client, None, raw="{not json").status_code == 400
    assert post(client, None, raw="[1, 2]").status_code == 400
    assert post(client, None, raw=b"\xff\xfe").status_code == 400
    assert not WebhookDelivery.objects.exists()


def test_an_issue_hook_that_does_not_read_as_one_gets_400(client, gitlab_on):
    response = post(client, {"object_kind": "issue", "object_attributes": {"title": "no ids"}})

    assert response.status_code == 400
    assert "Issue Hook" in response.json()["detail"]


def test_an_event_kind_it_does_not_use_gets_200_and_is_ignored(client, gitlab_on):
    response = post(client, {"object_kind": "push", "ref": "refs/heads/main"}, event="Push Hook")

    assert response.status_code == 200
    assert response.json()["status"].startswith("ignored")
    assert not WebhookDelivery.objects.exists()


def test_a_comment_on_a_merge_request_is_ignored(client, gitlab_on, mirrored):
    payload = gitlab_on.note_hook(gitlab_on.add_note(mirrored.iid, "LGTM", author="dev"))
    payload["object_attributes"]["noteable_type"] = "MergeRequest"

    response = post(client, payload, event="Note Hook")

    assert (response.status_code, response.json()["status"][:7]) == (200, "ignored")
    assert not WebhookDelivery.objects.exists()


def test_an_event_of_another_project_is_ignored(client, gitlab_on, mirrored):
    payload = gitlab_on.issue_hook(mirrored.iid)
    payload["project"]["path_with_namespace"] = "elsewhere/other"

    assert post(client, payload).json()["status"] == "ignored: another project"


def test_the_webhook_needs_no_sign_in_and_no_csrf_token(gitlab_on, mirrored):
    strict = Client(enforce_csrf_checks=True)

    response = post(strict, gitlab_on.issue_hook(mirrored.iid))

    assert (response.status_code, response.json()) == (200, {"status": "queued"})


def test_an_anonymous_get_is_refused(client):
    assert client.get(URL).status_code in (401, 405)


def test_a_get_with_the_token_is_not_allowed(client, gitlab_on):
    response = client.get(URL, headers={"X-Gitlab-Token": WEBHOOK_SECRET})

    assert response.status_code == 405


def test_an_issue_hook_updates_the_mirror_to_gitlabs_state(client, gitlab_on, mirrored, run_queued):
    gitlab_on.edit_issue(mirrored.iid, labels=[SCOPING, "proposal::SOW_WIP", "Segment::SMB"], title="Renamed")

    response = run_queued(client, gitlab_on.issue_hook(mirrored.iid, user="an.em"))

    assert (response.status_code, response.json()) == (200, {"status": "queued"})
    mirrored.refresh_from_db()
    assert (mirrored.title, mirrored.stage, mirrored.segment) == ("Renamed", "SOW_WIP", "SMB")
    assert mirrored.last_activity_at == mirrored.updated_at
    assert WebhookDelivery.objects.get().processed_at is not None


def test_the_same_delivery_twice_is_applied_once(client, gitlab_on, mirrored, run_queued):
    gitlab_on.edit_issue(mirrored.iid, title="Renamed")
    payload = gitlab_on.issue_hook(mirrored.iid, user="an.em")

    first = run_queued(client, payload, uuid="same-uuid")
    second = run_queued(client, payload, uuid="same-uuid")

    assert (first.status_code, first.json()["status"]) == (200, "queued")
    assert (second.status_code, second.json()["status"]) == (200, "duplicate")
    assert WebhookDelivery.objects.count() == 1
    assert gitlab_on.count_requests("GET", f"{ISSUES}/{mirrored.iid}") == 1
    assert len(run_queued.queued) == 1


def test_the_idempotency_key_identifies_a_delivery_too(client, gitlab_on, mirrored):
    payload = gitlab_on.issue_hook(mirrored.iid)
    headers = {"X-Gitlab-Event": "Issue Hook", "X-Gitlab-Token": WEBHOOK_SECRET, "Idempotency-Key": "key-1"}

    for _ in range(2):
        client.post(URL, json.dumps(payload), content_type="application/json", headers=headers)

    assert list(WebhookDelivery.objects.values_list("delivery_key", flat=True)) == ["key-1"]


def test_a_redelivery_without_any_id_is_recognised_by_its_body(client, gitlab_on, mirrored):
    payload = gitlab_on.issue_hook(mirrored.iid)
    headers = {"X-Gitlab-Event": "Issue Hook", "X-Gitlab-Token": WEBHOOK_SECRET}

    statuses = [
        client.post(URL, json.dumps(payload), content_type="application/json", headers=headers).json()[
            "status"
        ]
        for _ in range(2)
    ]

    assert statuses == ["queued", "duplicate"]


def test_an_issue_hook_is_applied_from_its_payload_when_gitlab_cannot_be_reached(
    client, gitlab_on, mirrored, run_queued
):
    gitlab_on.edit_issue(mirrored.iid, labels=[SCOPING, "proposal::Approved"], when=recently(minutes=1))
    payload = gitlab_on.issue_hook(mirrored.iid, user="an.em")
    gitlab_on.fail_next(503, times=100)

    run_queued(client, payload)

    mirrored.refresh_from_db()
    assert mirrored.stage == "Approved"
    assert mirrored.updated_at.microsecond == 0  # webhook payloads carry whole seconds


def test_an_issue_hook_for_an_issue_that_lost_the_scoping_label_marks_it_removed(
    client, gitlab_on, mirrored, run_queued
):
    gitlab_on.set_labels(mirrored.iid, ["Open"])

    run_queued(client, gitlab_on.issue_hook(mirrored.iid, user="an.em"))

    mirrored.refresh_from_db()
    assert mirrored.removed_at is not None


def test_an_issue_hook_for_a_new_scoping_issue_adds_it(client, gitlab_on, mirrored, run_queued):
    iid = gitlab_on.add_issue(title="Brand new", labels=[SCOPING, "Open"], author="seller")["iid"]

    run_queued(client, gitlab_on.issue_hook(iid, user="seller", action="open"))

    assert ScopingIssue.objects.get(iid=iid).author_username == "seller"


def test_an_issue_hook_for_an_issue_that_is_not_a_scoping_issue_is_ignored(client, gitlab_on):
    iid = gitlab_on.add_issue(title="A bug", labels=["bug"])["iid"]

    response = post(client, gitlab_on.issue_hook(iid, user="dev"))

    assert response.json()["status"] == "ignored: not a scoping issue"
    assert not WebhookDelivery.objects.exists()


def test_the_issue_hook_for_our_own_write_does_not_reset_activity(
    client, gitlab_on, gitlab_client, mirrored, run_queued
):
    before = mirrored.last_activity_at
    services.set_issue_stage(issue=mirrored, stage="SOW_WIP", actor=None)
    deliver_gitlab_writes(client=gitlab_client)

    run_queued(client, gitlab_on.issue_hook(mirrored.iid))  # GitLab reports the bot's change

    mirrored.refresh_from_db()
    assert mirrored.stage == "SOW_WIP"
    assert mirrored.last_activity_at == before


def test_a_human_comment_is_activity(client, gitlab_on, mirrored, run_queued):
    note = gitlab_on.add_note(
        mirrored.iid, "Customer asked for a call", author="an.em", when=recently(minutes=3)
    )

    response = run_queued(client, gitlab_on.note_hook(note), event="Note Hook")

    assert response.json() == {"status": "queued"}
    mirrored.refresh_from_db()
    assert abs(mirrored.last_activity_at - recently(minutes=3)) < timedelta(seconds=5)


def test_our_own_comment_is_not_activity(client, gitlab_on, mirrored, run_queued):
    before = mirrored.last_activity_at
    note = gitlab_on.add_note(mirrored.iid, "Closed as lost: no activity.")  # by the bot

    run_queued(client, gitlab_on.note_hook(note), event="Note Hook")

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before


def test_a_comment_posted_by_the_write_back_is_recognised_without_asking_gitlab(
    client, settings, gitlab_on, mirrored, run_queued
):
    before = mirrored.last_activity_at
    note = gitlab_on.add_note(mirrored.iid, "Closed as lost.", author="someone")
    GitLabWrite.objects.create(issue=mirrored, note="Closed as lost.", status="delivered", note_id=note["id"])
    settings.GITLAB_ENABLED = False

    run_queued(client, gitlab_on.note_hook(note), event="Note Hook")

    mirrored.refresh_from_db()
    assert mirrored.last_activity_at == before


def test_an_older_delivery_arriving_late_does_not_undo_a_newer_one(
    client, settings, gitlab_on, mirrored, run_queued
):
    settings.GITLAB_ENABLED = False  # apply payloads as they are, to see their order matter
    gitlab_on.edit_issue(mirrored.iid, title="First", when=recently(minutes=5))
    older = gitlab_on.issue_hook(mirrored.iid, user="an.em")
    gitlab_on.edit_issue(mirrored.iid, title="Second", when=recently(minutes=1))
    newer = gitlab_on.issue_hook(mirrored.iid, user="an.em")

    run_queued(client, newer, uuid="b")
    run_queued(client, older, uuid="a")

    mirrored.refresh_from_db()
    assert mirrored.title == "Second"


def test_a_delivery_stored_while_the_broker_was_down_is_applied_by_the_sweep(client, gitlab_on, mirrored):
    gitlab_on.edit_issue(mirrored.iid, title="Renamed while the broker was down")
    post(client, gitlab_on.issue_hook(mirrored.iid, user="an.em"))  # stored; nothing ran it
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(minutes=2))

    assert apply_waiting_deliveries() == 1
    assert apply_waiting_deliveries() == 0

    mirrored.refresh_from_db()
    assert mirrored.title == "Renamed while the broker was down"
    assert WebhookDelivery.objects.get().processed_at is not None


def test_the_sweep_leaves_a_delivery_that_may_still_be_on_its_way_to_a_worker(client, gitlab_on, mirrored):
    post(client, gitlab_on.issue_hook(mirrored.iid, user="an.em"))

    assert apply_waiting_deliveries() == 0
    assert WebhookDelivery.objects.get().processed_at is None
