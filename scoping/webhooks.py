"""GitLab's webhook: checked, de-duplicated and queued within the request; applied by a task.

CONTRACT.md: `X-Gitlab-Token` must equal GITLAB_WEBHOOK_SECRET (else 401, nothing stored); the
same delivery twice (`Idempotency-Key` / `X-Gitlab-Event-UUID`) is applied once; malformed JSON
gets 400; events PS Plan does not use get 200 and are ignored, since GitLab disables a hook that
keeps failing. An Issue Hook updates the mirror; a human comment (Note Hook) is activity.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from scoping.gitlab_client import GitLabClient, GitLabRefused, GitLabUnavailable, IssueHook, NoteHook
from scoping.gitlab_sync import has_scoping_label, mark_removed, store_issues
from scoping.models import GitLabWrite, ScopingIssue, WebhookDelivery

logger = logging.getLogger(__name__)

ISSUE, NOTE = "issue", "note"
# Reference: https://docs.gitlab.com/user/project/integrations/webhook_events/
EVENTS = {
    "Issue Hook": ISSUE,
    "Confidential Issue Hook": ISSUE,
    "Note Hook": NOTE,
    "Confidential Note Hook": NOTE,
}
_OBJECT_KINDS = {"issue": ISSUE, "note": NOTE}
_bot_usernames: dict[str, str] = {}


# --- The endpoint ------------------------------------------------------------------------------


@csrf_exempt
@login_not_required
def gitlab_webhook(request: HttpRequest) -> JsonResponse:
    """Check the token, refuse what is not JSON, store the delivery once and queue it."""
    secret = settings.GITLAB_WEBHOOK_SECRET
    if not secret or not constant_time_compare(request.headers.get("X-Gitlab-Token", ""), secret):
        return JsonResponse({"detail": "X-Gitlab-Token does not match the webhook secret."}, status=401)
    if request.method != "POST":
        return JsonResponse({"detail": "Use POST."}, status=405, headers={"Allow": "POST"})
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "The body is not valid JSON."}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"detail": "The body is not a JSON object."}, status=400)
    event = request.headers.get("X-Gitlab-Event", "")
    try:
        outcome = receive_delivery(event=event, payload=payload, key=_delivery_key(request, event))
    except (KeyError, TypeError, ValueError) as exc:
        return JsonResponse({"detail": f"Not a valid {event or 'GitLab'} payload: {exc!r}"}, status=400)
    return JsonResponse({"status": outcome})


def _delivery_key(request: HttpRequest, event: str) -> str:
    key = request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID") or ""
    if not key or len(key) > 200:
        # No id from GitLab (an old version): the same event and body is the same delivery.
        key = "sha256:" + hashlib.sha256(event.encode() + b"\0" + key.encode() + request.body).hexdigest()
    return key


# --- Services ----------------------------------------------------------------------------------


def receive_delivery(*, event: str, payload: dict[str, Any], key: str) -> str:
    """Store a delivery once and queue it: "queued", "duplicate" or "ignored" (with why).

    Raises KeyError/TypeError/ValueError when an issue or note event does not read as one.
    """
    kind = EVENTS.get(event) or (_OBJECT_KINDS.get(payload.get("object_kind", "")) if not event else None)
    if kind is None:
        return "ignored: not an event PS Plan uses"
    hook = IssueHook.from_payload(payload) if kind == ISSUE else NoteHook.from_payload(payload)
    if hook is None:
        return "ignored: a comment on something other than an issue"
    if not _our_project(hook.project_id, hook.project_path):
        return "ignored: another project"
    if isinstance(hook, IssueHook) and not _concerns_mirror(hook):
        return "ignored: not a scoping issue"
    with transaction.atomic():
        delivery, created = WebhookDelivery.objects.get_or_create(
            delivery_key=key, defaults={"event": event or kind, "payload": payload}
        )
        if created:
            transaction.on_commit(lambda: _queue(delivery.pk), robust=True)
    return "queued" if created else "duplicate"


def _queue(delivery_id: int) -> None:
    from scoping.tasks import process_webhook_delivery

    try:
        process_webhook_delivery.apply_async((delivery_id,), retry=False)
    except Exception as exc:  # kombu raises many types when the broker is down; the row waits for the sweep
        logger.warning(
            "Could not queue webhook delivery %s (%s); the periodic sweep applies it", delivery_id, exc
        )


# A delivery the broker never got (it was down) is applied by the sweep once it is this old.
SWEEP_AFTER = timedelta(minutes=1)


def apply_waiting_deliveries(*, limit: int = 500) -> int:
    """Apply stored deliveries that were never processed (queued while the broker was down); returns how many."""
    cutoff = timezone.now() - SWEEP_AFTER
    waiting = WebhookDelivery.objects.filter(processed_at__isnull=True, received_at__lt=cutoff, error="")
    applied = 0
    for delivery_id in waiting.order_by("received_at").values_list("pk", flat=True)[:limit]:
        try:
            process_delivery(delivery_id=delivery_id)
        except Exception:  # recorded on the row by process_delivery; the others still go
            logger.exception("Webhook delivery %s could not be applied", delivery_id)
            continue
        applied += 1
    return applied


def _concerns_mirror(hook: IssueHook) -> bool:
    """A scoping issue now, or one the mirror has (which may just have lost the label)."""
    return (
        has_scoping_label(hook.issue.labels) or ScopingIssue.objects.filter(gitlab_id=hook.issue.id).exists()
    )


def _our_project(project_id: int | None, project_path: str) -> bool:
    """A group hook also reports other projects; a payload that names none is given the benefit."""
    configured = str(settings.GITLAB_PROJECT).strip()
    if configured.isdigit():
        return project_id is None or project_id == int(configured)
    return not project_path or project_path.casefold() == configured.casefold()


def process_delivery(*, delivery_id: int) -> str:
    """Apply one stored delivery to the mirror, once; returns what it did."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).first()
    if delivery is None:
        return "already processed"
    kind = EVENTS.get(delivery.event) or _OBJECT_KINDS.get(delivery.event, ISSUE)
    try:
        outcome = _apply_issue_hook(delivery.payload) if kind == ISSUE else _apply_note_hook(delivery.payload)
    except Exception as exc:
        WebhookDelivery.objects.filter(pk=delivery_id).update(error=f"{type(exc).__name__}: {exc}")
        raise
    WebhookDelivery.objects.filter(pk=delivery_id, processed_at__isnull=True).update(
        processed_at=timezone.now(), error=""
    )
    return outcome


def _apply_issue_hook(payload: dict[str, Any]) -> str:
    """Store the issue as GitLab has it now (read again when GitLab answers, else as the payload says)."""
    hook = IssueHook.from_payload(payload)
    issue = hook.issue
    if settings.GITLAB_ENABLED:
        # The payload may be stale by the time it is processed (deliveries can arrive out of order).
        try:
            with GitLabClient.from_settings() as client:
                issue = client.get_issue(hook.issue.iid)
        except GitLabRefused as exc:
            if exc.status != 404:
                raise
            return f"issue #{hook.issue.iid} is gone: marked {mark_removed(gitlab_ids=[hook.issue.id])}"
        except GitLabUnavailable as exc:
            logger.warning("Applying an Issue Hook from its payload: %s", exc)
    written = store_issues([issue], actors={issue.id: hook.actor_username})
    if not written and not has_scoping_label(issue.labels):
        return f"issue #{issue.iid} is not a scoping issue"
    return f"issue #{issue.iid} {'updated' if written else 'unchanged'}"


def _apply_note_hook(payload: dict[str, Any]) -> str:
    """A person's comment is activity; PS Plan's own comments and GitLab's system notes are not."""
    hook = NoteHook.from_payload(payload)
    if hook is None or hook.system:
        return "ignored: not a person's comment on an issue"
    if GitLabWrite.objects.filter(note_id=hook.note_id).exists() or hook.author_username == _bot_username():
        return f"ignored: PS Plan's own comment on #{hook.issue_iid}"
    moved = ScopingIssue.objects.filter(iid=hook.issue_iid, last_activity_at__lt=hook.created_at).update(
        last_activity_at=hook.created_at
    )
    return f"comment on #{hook.issue_iid}: activity {'moved' if moved else 'unchanged'}"


def _bot_username() -> str:
    """The GitLab user behind GITLAB_TOKEN (PS Plan's own account); empty when GitLab is off or down."""
    if not settings.GITLAB_ENABLED:
        return ""
    cache_key = hashlib.sha256(f"{settings.GITLAB_URL}\0{settings.GITLAB_TOKEN}".encode()).hexdigest()
    if cache_key not in _bot_usernames:
        try:
            with GitLabClient.from_settings() as client:
                _bot_usernames[cache_key] = client.current_user().username
        except GitLabUnavailable as exc:
            logger.warning("Cannot tell PS Plan's own comments apart: %s", exc)
            return ""
    return _bot_usernames[cache_key]


def prune_deliveries(*, keep_days: int = 30) -> int:
    """Delete processed deliveries older than `keep_days`; returns how many went."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    deleted, _ = WebhookDelivery.objects.filter(processed_at__lt=cutoff).delete()
    return deleted
