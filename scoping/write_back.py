"""Delivery of queued GitLab writes (GitLabWrite rows) in batched runs, exactly once, in order per issue.

A run claims up to BATCH due writes (psplan.queue), reads their issues as GitLab has them now with list
requests (`iids[]`, 100 a request) and the project's labels once, then sends each issue one PUT with
only the labels to add and remove — worked out from the writes' intent against GitLab's labels of the
moment, so a label someone added meanwhile survives and scoped exclusivity holds — and then its notes.
GitLab's answer is stored on the local row, marked as PS Plan's own write so it is not activity.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.conf import settings

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from psplan import queue
from scoping import labels as label_rules
from scoping.choices import IssueState
from scoping.gitlab_client import GitLabClient, GitLabIssue, GitLabNote, GitLabRefused, GitLabUnavailable
from scoping.gitlab_sync import Answer, mark_removed, store_answers
from scoping.models import GitLabWrite

logger = logging.getLogger(__name__)

BATCH = 100
# Writes that fail one after another this often mean GitLab is in trouble: the run gives its worker back.
OUTAGE_AFTER = 3
# GitLab answers 409 when two edits of one issue collide: worth another try, not a refusal.
_TRY_AGAIN_STATUSES = frozenset({409, 423})


class _Refused(Exception):
    """GitLab would refuse this write, or did: it fails for good with this message."""


def deliver_gitlab_writes(*, budget: float = 0.0, client: GitLabClient | None = None) -> Counter:
    """Send due writes to GitLab; with a `budget` in seconds, transient failures are retried within it.

    Without one (a worker, a person's request) each call is tried once and a write GitLab cannot take
    now waits in the queue with a backoff. Returns how many were delivered, failed and left to retry.
    """
    if client is None and not settings.GITLAB_ENABLED:
        return Counter()
    if not queue.due(GitLabWrite).exists():
        return Counter()
    client = client or GitLabClient.from_settings(max_retries=None if budget else 0)
    courier = _Courier(client, patient=budget > 0)
    with SyncRun.running(SyncKind.GITLAB_OUTBOX) as run:
        queue.drain(GitLabWrite, courier.deliver, batch=BATCH, budget=budget)
        run.finish(
            counts=courier.run_counts(), error="\n".join(courier.errors[-50:]), status=courier.status()
        )
    return courier.counts


def merged_intent(writes: Iterable[GitLabWrite]) -> dict[str, object]:
    """What the writes of one issue want together: later writes win, family by family."""
    intent: dict[str, object] = {}
    for write in writes:
        intent.update(write.intent)
    return intent


def state_event(wanted: object, state: str) -> str | None:
    """The PUT's state_event that gives the wanted state, if the issue is not in it already."""
    if wanted == IssueState.CLOSED and state == IssueState.OPENED:
        return "close"
    if wanted == IssueState.OPENED and state == IssueState.CLOSED:
        return "reopen"
    return None


@dataclass
class _Outcomes:
    """What one batch achieved, written to the database together when the batch ends.

    Nothing here is needed to avoid sending twice: a write left pending by a crash is worked out
    again against GitLab's labels (nothing left to PUT) and its comment looked for before posting.
    """

    answers: list[Answer] = field(default_factory=list)
    delivered: list[GitLabWrite] = field(default_factory=list)
    updates: list[GitLabWrite] = field(default_factory=list)

    def save(self) -> int:
        GitLabWrite.objects.bulk_update(self.updates, ["response_updated_at", "note_id"])
        store_answers(self.answers)
        return queue.delivered(self.delivered)


class _Courier:
    """One delivery run: the client, the project's labels (read once), what happened."""

    def __init__(self, client: GitLabClient, *, patient: bool) -> None:
        self.client = client
        self.patient = patient
        self.counts: Counter[str] = Counter(delivered=0, failed=0, retrying=0)
        self.errors: list[str] = []
        self._requests_before = client.request_count
        self._labels: frozenset[str] | None = None
        self._bot: str | None = None
        self._failing_in_a_row = 0

    def deliver(self, writes: list[GitLabWrite]) -> bool:
        """Deliver one claimed batch; False when GitLab is unusable and the run should stop."""
        groups: dict[int, list[GitLabWrite]] = {}
        for write in writes:
            groups.setdefault(write.issue_id, []).append(write)
        try:
            iids = sorted({write.issue.iid for write in writes})
            found = {issue.iid: issue for issue in self.client.iter_issues(label=None, iids=iids)}
        except GitLabUnavailable as exc:
            self._retry(writes, exc)
            return False
        outcomes, pending = _Outcomes(), list(groups.values())
        try:
            while pending:
                group = pending.pop(0)
                outage = self._deliver_issue(group, found.get(group[0].issue.iid), outcomes)
                if outage is not None:
                    for waiting in pending:
                        self._retry(waiting, outage)
                    return False
        finally:
            self.counts["delivered"] += outcomes.save()
        return True

    def _deliver_issue(
        self, group: list[GitLabWrite], current: GitLabIssue | None, outcomes: _Outcomes
    ) -> GitLabUnavailable | None:
        """Deliver one issue's writes and note the outcome; the error when GitLab looks unusable."""
        if current is None:
            self._fail(group, "The issue no longer exists in GitLab (deleted or moved to another project)")
            mark_removed(gitlab_ids=[group[0].issue.gitlab_id])
            return None
        try:
            answer, own_from = self._send(group, current, outcomes)
        except GitLabUnavailable as exc:
            self._retry(group, exc)
            self._failing_in_a_row += 1
            rate_limited = exc.retry_after is not None
            return exc if rate_limited or self._failing_in_a_row >= OUTAGE_AFTER else None
        except GitLabRefused as exc:
            if exc.status in _TRY_AGAIN_STATUSES:
                self._retry(group, exc)
            else:
                self._refused(group, str(exc), current, outcomes)
        except _Refused as exc:
            self._refused(group, str(exc), current, outcomes)
        except Exception as exc:  # a bug must not lose the writes: they are retried like an outage
            logger.exception("Delivering GitLab writes for #%s failed", current.iid)
            self._retry(group, exc)
        else:
            # A retry may find the state an earlier attempt left: that is not a person's edit.
            ours = {write.response_updated_at for write in group}
            seen = None if current.updated_at in ours else current.updated_at
            outcomes.answers.append(Answer(answer, own_from=own_from, seen_before=seen))
            outcomes.delivered += group
        self._failing_in_a_row = 0
        return None

    def _send(
        self, group: list[GitLabWrite], current: GitLabIssue, outcomes: _Outcomes
    ) -> tuple[GitLabIssue, datetime | None]:
        """One PUT with what is still to do, then the notes; returns GitLab's issue and when our write began."""
        intent = merged_intent(group)
        change = label_rules.change_for_intent(current.labels, intent)
        self._check_labels_exist(change.add)
        event = state_event(intent.get("state"), current.state)
        assignees = intent.get("assignee_ids")
        if assignees is not None and sorted(assignees) == sorted(current.assignee_ids):  # type: ignore[call-overload]
            assignees = None
        answer, own_from = current, None
        if change or event or assignees is not None:
            answer = self.client.update_issue(
                current.iid,
                add_labels=change.add,
                remove_labels=change.remove,
                state_event=event,
                assignee_ids=assignees,  # type: ignore[arg-type]
            )
            own_from = answer.updated_at
            for write in group:
                write.response_updated_at = answer.updated_at
        # Saved even when a comment fails below: a retry then knows the PUT's updated_at is ours.
        outcomes.updates += group
        for write in group:
            if write.note and write.note_id is None:
                note = self._posted_before(write) or self.client.create_note(current.iid, write.note)
                write.note_id = note.id
                # A note touches its issue: GitLab's updated_at is now the note's, and it is ours.
                answer = replace(answer, updated_at=max(answer.updated_at, note.created_at))
                own_from = own_from or note.created_at
        return answer, own_from

    def _check_labels_exist(self, labels: Iterable[str]) -> None:
        """PS Plan creates only the canonical label of a new fiscal quarter: GitLab would silently make a stray one from a typo."""
        wanted = list(labels)
        if not wanted:
            return
        if self._labels is None:
            self._labels = self.client.project_label_names()
        missing = [label for label in wanted if label not in self._labels]
        for label in [label for label in missing if label_rules.is_new_quarter_label(label)]:
            self.client.create_label(label)
            self._labels = self._labels | {label}
            missing.remove(label)
        if missing:
            near = {name.casefold(): name for name in self._labels}
            hints = [f" (GitLab has {near[m.casefold()]!r})" if m.casefold() in near else "" for m in missing]
            names = ", ".join(f"{m!r}{hint}" for m, hint in zip(missing, hints, strict=True))
            raise _Refused(
                f"Label {names} does not exist in the GitLab project; PS Plan creates only new close_qtr labels. "
                "Create it in GitLab, then make the change again."
            )

    def _posted_before(self, write: GitLabWrite) -> GitLabNote | None:
        """The note an earlier attempt posted when its answer was lost on the way back."""
        if write.attempts <= 1:
            return None
        if self._bot is None:
            self._bot = self.client.current_user().username
        notes = self.client.recent_notes(write.issue.iid)
        return next((n for n in notes if n.body == write.note and n.author_username == self._bot), None)

    def _retry(self, group: list[GitLabWrite], exc: Exception) -> None:
        retry_after = getattr(exc, "retry_after", None)
        base, cap = (
            (settings.GITLAB_BACKOFF_BASE, settings.GITLAB_BACKOFF_CAP)
            if self.patient
            else (settings.GITLAB_OUTBOX_RETRY_BASE, settings.GITLAB_OUTBOX_RETRY_CAP)
        )
        delay = queue.retry_delay(max(w.attempts for w in group), base=base, cap=cap, retry_after=retry_after)
        error = (
            str(exc) if isinstance(exc, GitLabUnavailable | GitLabRefused) else f"{type(exc).__name__}: {exc}"
        )
        queue.retry_later(group, error=error, delay=delay)
        self.counts["retrying"] += len(group)
        self.errors.append(f"#{group[0].issue.iid}: {error} (attempt {group[0].attempts}, retrying)")

    def _fail(self, group: list[GitLabWrite], error: str) -> None:
        self.counts["failed"] += queue.failed(group, error=error)
        self.errors.append(f"#{group[0].issue.iid}: {error}")

    def _refused(
        self, group: list[GitLabWrite], error: str, current: GitLabIssue, outcomes: _Outcomes
    ) -> None:
        self._fail(group, error)
        # The local row showed the edit as made: it goes back to what GitLab really has.
        outcomes.answers.append(Answer(current))

    def run_counts(self) -> dict[str, int]:
        return {**self.counts, "requests": self.client.request_count - self._requests_before}

    def status(self) -> SyncStatus:
        return SyncStatus.FAILED if self.counts["failed"] else SyncStatus.SUCCEEDED
