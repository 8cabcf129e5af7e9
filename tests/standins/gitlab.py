"""A local GitLab stand-in: a real HTTP server speaking enough of REST v4 for python-gitlab."""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

JSON = dict[str, Any]

DEFAULT_PER_PAGE = 20
_UPDATABLE = (
    "title",
    "description",
    "labels",
    "add_labels",
    "remove_labels",
    "state_event",
    "assignee_ids",
    "assignee_id",
)
MAX_PER_PAGE = 100

# Bodies GitLab (or the nginx/Workhorse in front of it) sends with each fault status.
_FAULT_BODIES: dict[int, tuple[str, bytes]] = {
    401: ("application/json", b'{"message":"401 Unauthorized"}'),
    403: ("application/json", b'{"message":"403 Forbidden"}'),
    404: ("application/json", b'{"message":"404 Not found"}'),
    409: ("application/json", b'{"message":"409 Conflict"}'),
    429: ("text/plain", b"Retry later\n"),
    500: ("application/json", b'{"message":"500 Internal Server Error"}'),
    502: ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"),
    503: ("text/html", b"<html><body><h1>503 Service Unavailable</h1></body></html>\n"),
    504: ("text/html", b"<html><body><h1>504 Gateway Time-out</h1></body></html>\n"),
}


def iso(value: datetime | None) -> str | None:
    """Format a time as GitLab does: UTC, milliseconds, trailing Z."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hook_time(value: datetime | None) -> str | None:
    """Times in webhook payloads: `2024-03-01 09:00:00 UTC`, as GitLab still sends them."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else None


def _parse_time(value: str) -> datetime:
    """Parse an ISO 8601 time; a '+' decoded as a space in a query string is forgiven."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _split(value: Any) -> list[str]:
    """Labels arrive as a comma-separated string or as a JSON array."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _ints(value: Any) -> list[int]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [int(item) for item in items if str(item).strip() not in ("", "0")]


class _HTTPError(Exception):
    def __init__(self, status: int, payload: JSON) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received; `path` names the project by its numeric id."""

    method: str
    path: str
    raw_path: str
    query: dict[str, Any]
    body: Any


@dataclass
class _Fault:
    # "status", "drop" (before handling), "drop_after" (handled, answer lost), "before" (an action first)
    # or "before_drop" (an action, then the connection closes unhandled)
    kind: str
    remaining: int
    method: str | None
    path_prefix: str | None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    body: bytes = b""
    action: Callable[[], Any] | None = None

    def matches(self, method: str, paths: Iterable[str]) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return self.path_prefix is None or any(p.startswith(self.path_prefix) for p in paths)


@dataclass
class _Issue:
    id: int
    iid: int
    title: str
    description: str
    state: str
    labels: list[str]
    assignee_ids: list[int]
    author_id: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by_id: int | None = None
    web_url: str | None = None  # GitLab's own unless a test says otherwise


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Response(status, body, headers=headers or {})


@dataclass(frozen=True)
class _Call:
    method: str
    raw_path: str
    segments: list[str]
    query_pairs: list[tuple[str, str]]
    params: dict[str, Any]
    host: str


class GitLabStandIn:
    """In-memory GitLab (one project) served over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        token: str = "stand-in-token",
        project_path: str = "group/sub/ps-plan",
        project_id: int = 4242,
        latency: float = 0.0,
        bot_username: str = "psplan-bot",
    ) -> None:
        self.token = token
        self.project_path = project_path
        self.project_id = project_id
        self.latency = latency
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.created_labels: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._issues: dict[int, _Issue] = {}
        self._labels: dict[str, JSON] = {}
        self._users: dict[int, JSON] = {}
        self._notes: dict[int, list[JSON]] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._issue_json: dict[int, bytes] = {}
        self._query_cache: dict[tuple[Any, ...], list[int]] = {}
        self._ids = itertools.count(1000)
        self._user_ids = itertools.count(1)
        self._last_iid = 0
        self._usernames: dict[str, int] = {}
        self._members: list[int] = []
        self._random_faults: tuple[dict[int, float], random.Random, int] | None = None
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.bot = self.add_user(bot_username, name="PS Plan bot")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GitLabStandIn:
        """Serve requests in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> GitLabStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def project_web_url(self) -> str:
        return f"{self.url}/{self.project_path}"

    # -- seeding and human edits -------------------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        name: str | None = None,
        public_email: str = "",
        state: str = "active",
        user_id: int | None = None,
        member: bool = False,
    ) -> JSON:
        """Create a GitLab user (a member of the project when `member`); returns what `GET /users/:id` would."""
        with self._lock:
            uid = user_id if user_id is not None else next(self._user_ids)
            self._users[uid] = {
                "id": uid,
                "username": username,
                "name": name if name is not None else username.replace(".", " ").title(),
                "state": state,
                "public_email": public_email,
                "web_url": f"{self.url}/{username}",
            }
            self._usernames[username] = uid
            if member:
                self._members.append(uid)
            self._changed()
            return self._user_full(self._users[uid])

    def add_label(self, name: str, *, color: str = "#6699cc", description: str = "") -> JSON:
        """Create a project label (no-op when it exists); returns it."""
        with self._lock:
            if name not in self._labels:
                self._labels[name] = {
                    "id": next(self._ids),
                    "name": name,
                    "color": color,
                    "text_color": "#FFFFFF",
                    "description": description or None,
                    "description_html": description,
                    "subscribed": False,
                    "priority": None,
                    "is_project_label": True,
                }
            return dict(self._labels[name])

    def remove_label(self, name: str) -> None:
        """Delete a project label (issues keep the name, as GitLab's do not)."""
        with self._lock:
            self._labels.pop(name, None)
            self._changed()

    def delete_issue(self, iid: int) -> None:
        """Delete an issue, as an admin would in GitLab: it is gone from every listing."""
        with self._lock:
            self._issues.pop(int(iid), None)
            self._notes.pop(int(iid), None)
            self._changed(int(iid))

    def add_issue(
        self,
        *,
        title: str = "Scoping issue",
        description: str = "",
        labels: Iterable[str] = (),
        assignees: Iterable[str | int] = (),
        author: str = "requester",
        state: str = "opened",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
        closed_at: datetime | None = None,
        iid: int | None = None,
    ) -> JSON:
        """Create an issue (unknown labels and users are created too); returns its API form."""
        labels = list(dict.fromkeys(labels))
        with self._lock:
            created = created_at or self.clock()
            updated = updated_at or created
            number = iid if iid is not None else self._last_iid + 1
            self._last_iid = max(self._last_iid, number)
            if state == "closed" and closed_at is None:
                closed_at = updated
            for name in labels:
                self.add_label(name)
            self._issues[number] = _Issue(
                id=next(self._ids),
                iid=number,
                title=title,
                description=description,
                state=state,
                labels=labels,
                assignee_ids=[self._user_id(a) for a in assignees],
                author_id=self._user_id(author),
                created_at=created,
                updated_at=updated,
                closed_at=closed_at if state == "closed" else None,
            )
            self._notes.setdefault(number, [])
            self._changed(number)
            return self.issue(number)

    def add_note(
        self, iid: int, body: str, *, author: str | None = None, when: datetime | None = None
    ) -> JSON:
        """A human comments on the issue (bumps the issue's updated_at, as GitLab does)."""
        with self._lock:
            issue = self._issue(iid)
            author_id = self._user_id(author) if author else self.bot["id"]
            return self._create_note(issue, body, author_id, when or self.clock(), system=False)

    def edit_issue(
        self,
        iid: int,
        *,
        when: datetime | None = None,
        title: str | None = None,
        description: str | None = None,
        state: str | None = None,
        labels: Iterable[str] | None = None,
        assignees: Iterable[str | int] | None = None,
    ) -> JSON:
        """Simulate a human edit in GitLab's UI: the given fields change and updated_at moves."""
        with self._lock:
            issue = self._issue(iid)
            now = when or self.clock()
            if title is not None:
                issue.title = title
            if description is not None:
                issue.description = description
            if labels is not None:
                labels = list(dict.fromkeys(labels))
                for name in labels:
                    self.add_label(name)
                issue.labels = labels
            if assignees is not None:
                issue.assignee_ids = [self._user_id(a) for a in assignees]
            if state is not None and state != issue.state:
                issue.state = state
                issue.closed_at = now if state == "closed" else None
            issue.updated_at = now
            self._changed(iid)
            return self.issue(iid)

    def override_web_url(self, iid: int, url: str) -> None:
        """Make GitLab answer an odd web_url for this issue (hostile input for PS Plan)."""
        with self._lock:
            self._issue(iid).web_url = url
            self._changed(int(iid))

    def set_labels(self, iid: int, labels: Iterable[str], *, when: datetime | None = None) -> JSON:
        """A human replaces the issue's labels."""
        return self.edit_issue(iid, labels=labels, when=when)

    def touch(self, iid: int, when: datetime | None = None) -> JSON:
        """A human edit that only moves updated_at."""
        return self.edit_issue(iid, when=when)

    # -- webhook payloads, as GitLab would POST them ------------------------------------------

    def issue_hook(self, iid: int, *, user: str | None = None, action: str = "update") -> JSON:
        """The Issue Hook GitLab sends after a change to the issue by `user` (the bot by default)."""
        # Reference: https://docs.gitlab.com/user/project/integrations/webhook_events/#work-item-events
        with self._lock:
            issue = self._issue(iid)
            data = self._issue_api(issue)
            labels = [self._label_hook(name) for name in sorted(issue.labels)]
            attributes = {
                **{k: data[k] for k in ("id", "iid", "title", "description", "state", "project_id")},
                "author_id": issue.author_id,
                "assignee_ids": list(issue.assignee_ids),
                "assignee_id": issue.assignee_ids[0] if issue.assignee_ids else None,
                "created_at": _hook_time(issue.created_at),
                "updated_at": _hook_time(issue.updated_at),
                "closed_at": _hook_time(issue.closed_at),
                "url": data["web_url"],
                "action": action,
                "labels": labels,
            }
            return {
                "object_kind": "issue",
                "event_type": "issue",
                "user": self._hook_user(user),
                "project": self._hook_project(),
                "object_attributes": attributes,
                "labels": labels,
                "assignees": [self._hook_user(uid) for uid in issue.assignee_ids],
                "changes": {},
            }

    def note_hook(self, note: JSON) -> JSON:
        """The Note Hook GitLab sends for a comment (as returned by add_note) on an issue."""
        # Reference: https://docs.gitlab.com/user/project/integrations/webhook_events/#comment-events
        with self._lock:
            issue = self._issue(note["noteable_iid"])
            attributes = {
                "id": note["id"],
                "note": note["body"],
                "noteable_type": "Issue",
                "author_id": note["author"]["id"],
                "created_at": _hook_time(_parse_time(note["created_at"])),
                "updated_at": _hook_time(_parse_time(note["updated_at"])),
                "project_id": self.project_id,
                "system": note["system"],
                "noteable_id": issue.id,
                "url": f"{self.project_web_url}/-/issues/{issue.iid}#note_{note['id']}",
            }
            issue_data = self._issue_api(issue)
            return {
                "object_kind": "note",
                "event_type": "note",
                "user": self._hook_user(note["author"]["id"]),
                "project_id": self.project_id,
                "project": self._hook_project(),
                "object_attributes": attributes,
                "issue": {
                    **{k: issue_data[k] for k in ("id", "iid", "title", "description", "state")},
                    "updated_at": _hook_time(issue.updated_at),
                    "labels": [self._label_hook(name) for name in sorted(issue.labels)],
                },
            }

    def _hook_user(self, ref: str | int | None) -> JSON:
        user = self._users[self.bot["id"] if ref is None else self._user_id(ref)]
        email = user["public_email"] or "[REDACTED]"
        return {k: user[k] for k in ("id", "name", "username")} | {"avatar_url": None, "email": email}

    def _hook_project(self) -> JSON:
        api = self._project_api()
        keys = ("id", "name", "web_url", "path_with_namespace", "default_branch")
        return {k: api[k] for k in keys} | {"namespace": api["namespace"]["full_path"]}

    def _label_hook(self, name: str) -> JSON:
        label = self._labels.get(name) or self.add_label(name)
        return {k: label[k] for k in ("id", "color", "description")} | {"title": name, "type": "ProjectLabel"}

    # -- inspection --------------------------------------------------------------------------

    def issue(self, iid: int) -> JSON:
        """The issue as `GET /projects/:id/issues/:iid` returns it."""
        with self._lock:
            return json.loads(self._issue_bytes(self._issue(iid)))

    def notes(self, iid: int) -> list[JSON]:
        """All notes of an issue, oldest first, system notes included."""
        with self._lock:
            return [dict(note) for note in self._notes.get(iid, [])]

    @property
    def label_names(self) -> list[str]:
        with self._lock:
            return sorted(self._labels)

    @property
    def issue_count(self) -> int:
        return len(self._issues)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        return len(self._requests)

    def count_requests(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many requests matched the method and the (canonical) path prefix."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_prefix is None or r.path.startswith(path_prefix))
        )

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        rate_limit_reset: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (429 carries rate-limit headers)."""
        headers: dict[str, str] = {}
        content_type, body = _FAULT_BODIES.get(
            status, ("application/json", json.dumps({"message": f"{status} Error"}).encode())
        )
        if message is not None:
            content_type, body = "application/json", json.dumps({"message": message}).encode()
        if status == 429:
            if retry_after is None and rate_limit_reset is None:
                retry_after = 1
            reset = rate_limit_reset if rate_limit_reset is not None else time.time() + retry_after
            headers.update(
                {
                    "RateLimit-Limit": "600",
                    "RateLimit-Observed": "601",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(math.ceil(reset)),
                    "RateLimit-ResetTime": formatdate(reset, usegmt=True),
                }
            )
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        fault = _Fault("status", times, method, path, status, headers, content_type, body)
        with self._lock:
            self._faults.append(fault)

    def drop_next(
        self,
        times: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Close the connection without any answer for the next `times` matching requests.

        With `after_processing`, GitLab does the work first and only the answer is lost.
        """
        with self._lock:
            self._faults.append(_Fault("drop_after" if after_processing else "drop", times, method, path))

    def before_next(
        self,
        action: Callable[[], Any],
        *,
        method: str | None = None,
        path: str | None = None,
        then_drop: bool = False,
    ) -> None:
        """Run `action` (say, a human edit) just before GitLab handles the next matching request.

        With `then_drop` the request is not handled at all: its connection closes unanswered.
        """
        with self._lock:
            self._faults.append(
                _Fault("before_drop" if then_drop else "before", 1, method, path, action=action)
            )

    def announce_rate_limit(self, *, remaining: int, reset_in: float, times: int = 1) -> None:
        """Send GitLab's RateLimit-* headers with the next `times` successful answers."""
        reset = time.time() + reset_in
        headers = {
            "RateLimit-Limit": "600",
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(math.ceil(reset)),
            "RateLimit-ResetTime": formatdate(reset, usegmt=True),
        }
        with self._lock:
            self._faults.append(_Fault("headers", times, None, None, headers=headers))

    def fail_at_random(self, rates: dict[int, float], *, seed: int = 0, retry_after: int = 1) -> None:
        """From now on, answer requests with these statuses at these rates, e.g. {429: 0.1, 502: 0.05}.

        GitLab did not act on a request answered so; a 429 says when to come back.
        """
        with self._lock:
            self._random_faults = (dict(rates), random.Random(seed), retry_after)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random_faults = None

    # -- internals: state --------------------------------------------------------------------

    def _random_fault(self) -> _Fault | None:
        rates, rng, retry_after = self._random_faults  # type: ignore[misc]
        draw, threshold = rng.random(), 0.0
        for status, rate in rates.items():
            threshold += rate
            if draw < threshold:
                headers = {"Retry-After": str(retry_after)} if status == 429 else {}
                body = json.dumps({"message": f"{status} Error"}).encode()
                return _Fault("status", 1, None, None, status, headers, "application/json", body)
        return None

    def _changed(self, iid: int | None = None) -> None:
        self._query_cache.clear()
        if iid is not None:
            self._issue_json.pop(iid, None)

    def _issue(self, iid: int) -> _Issue:
        try:
            return self._issues[int(iid)]
        except (KeyError, ValueError):
            raise _HTTPError(404, {"message": "404 Not found"}) from None

    def _user_id(self, ref: str | int) -> int:
        if isinstance(ref, int):
            return ref
        known = self._usernames.get(ref)
        return known if known is not None else self.add_user(ref)["id"]

    def _user_basic(self, uid: int | None) -> JSON | None:
        user = self._users.get(uid) if uid is not None else None
        if user is None:
            return None
        basic = {k: user[k] for k in ("id", "username", "name", "state", "web_url")}
        return basic | {"locked": False, "avatar_url": None}

    def _user_full(self, user: JSON) -> JSON:
        extra = {"public_email": user["public_email"] or "", "bio": "", "bot": False}
        return self._user_basic(user["id"]) | extra  # type: ignore[operator]

    def _issue_bytes(self, issue: _Issue) -> bytes:
        cached = self._issue_json.get(issue.iid)
        if cached is None:
            cached = json.dumps(self._issue_api(issue), separators=(",", ":")).encode()
            self._issue_json[issue.iid] = cached
        return cached

    def _issue_api(self, issue: _Issue) -> JSON:
        assignees = [self._user_basic(uid) for uid in issue.assignee_ids]
        user_notes = sum(1 for n in self._notes.get(issue.iid, []) if not n["system"])
        return {
            "id": issue.id,
            "iid": issue.iid,
            "project_id": self.project_id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at),
            "closed_by": self._user_basic(issue.closed_by_id) if issue.closed_at else None,
            "labels": sorted(issue.labels),
            "milestone": None,
            "assignees": assignees,
            "assignee": assignees[0] if assignees else None,
            "author": self._user_basic(issue.author_id),
            "type": "ISSUE",
            "issue_type": "issue",
            "user_notes_count": user_notes,
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": None,
            "confidential": False,
            "discussion_locked": None,
            "web_url": issue.web_url or f"{self.project_web_url}/-/issues/{issue.iid}",
            "references": {
                "short": f"#{issue.iid}",
                "relative": f"#{issue.iid}",
                "full": f"{self.project_path}#{issue.iid}",
            },
            "severity": "UNKNOWN",
        }

    def _create_note(self, issue: _Issue, body: str, author_id: int, when: datetime, *, system: bool) -> JSON:
        notes = self._notes.setdefault(issue.iid, [])
        note = {
            "id": next(self._ids),
            "type": None,
            "body": body,
            "attachment": None,
            "author": self._user_basic(author_id),
            "created_at": iso(when),
            "updated_at": iso(when),
            "system": system,
            "noteable_id": issue.id,
            "noteable_type": "Issue",
            "noteable_iid": issue.iid,
            "project_id": self.project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        notes.append(note)
        issue.updated_at = when  # a note touches its issue
        self._changed(issue.iid)
        return dict(note)

    def _find_or_create_label(self, name: str) -> str:
        # GitLab looks labels up by exact title and silently creates a missing one.
        if name not in self._labels:
            self.add_label(name)
            self.created_labels.append(name)
        return name

    # -- internals: HTTP ---------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        call = self._read_call(handler)
        paths = (unquote(call.raw_path), self._canonical_path(call.segments))
        with self._lock:
            self._requests.append(
                RecordedRequest(call.method, paths[1], call.raw_path, dict(call.query_pairs), call.params)
            )
            fault = next((f for f in self._faults if f.matches(call.method, paths)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            elif self._random_faults is not None:
                fault = self._random_fault()
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind in ("before", "before_drop") and fault.action is not None:
            fault.action()
        if fault is not None and fault.kind == "before_drop":
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "drop":
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            response = _Response(fault.status, fault.body, fault.content_type, fault.headers)
        else:
            response = self._respond(handler, call)
        if fault is not None and fault.kind == "drop_after":
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "headers" and response.status < 400:
            response.headers = {**response.headers, **fault.headers}
        _write(handler, response)

    def _respond(self, handler: BaseHTTPRequestHandler, call: _Call) -> _Response:
        given = handler.headers.get("PRIVATE-TOKEN") or ""
        bearer = handler.headers.get("Authorization") or ""
        if given != self.token and bearer != f"Bearer {self.token}":
            return _json_response(401, {"message": "401 Unauthorized"})
        try:
            with self._lock:
                return self._route(call)
        except _HTTPError as exc:
            return _json_response(exc.status, exc.payload)
        except Exception as exc:  # a stand-in bug must show up as a loud 500, not a hang
            self.errors.append(repr(exc))
            return _json_response(500, {"message": "500 Internal Server Error"})

    @staticmethod
    def _read_call(handler: BaseHTTPRequestHandler) -> _Call:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw_body = handler.rfile.read(length) if length else b""
        pairs = parse_qsl(split.query, keep_blank_values=True)
        params = _params(pairs)
        content_type = handler.headers.get("Content-Type") or ""
        if raw_body and "json" in content_type:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = {"__invalid_json__": True}
            if isinstance(body, dict):
                params.update(body)
        elif raw_body:
            params.update(_params(parse_qsl(raw_body.decode(), keep_blank_values=True)))
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        while segments and segments[-1] == "":
            segments.pop()
        host = handler.headers.get("Host") or f"127.0.0.1:{handler.server.server_address[1]}"
        return _Call(handler.command, split.path, segments, pairs, params, host)

    def _canonical_path(self, segments: list[str]) -> str:
        parts = list(segments)
        if parts[2:3] == ["projects"] and len(parts) > 3 and self._is_project(parts[3]):
            parts[3] = str(self.project_id)
        return "/" + "/".join(parts)

    def _is_project(self, ref: str) -> bool:
        return ref == str(self.project_id) or ref.lower() == self.project_path.lower()

    def _route(self, call: _Call) -> _Response:
        if call.params.get("__invalid_json__"):
            raise _HTTPError(400, {"error": "The provided content-type is not supported."})
        if call.segments[:2] != ["api", "v4"]:
            raise _HTTPError(404, {"error": "404 Not Found"})
        method, rest, params = call.method, call.segments[2:], call.params
        match rest:
            case ["projects", ref, *tail]:
                if not self._is_project(ref):
                    raise _HTTPError(404, {"message": "404 Project Not Found"})
                return self._route_project(call, method, tail, params)
            case ["users"] if method == "GET":
                return self._page(call, self._find_users(params), lambda u: self._user_basic(u))
            case ["users", uid] if method == "GET":
                user = self._users.get(int(uid)) if uid.isdigit() else None
                if user is None:
                    raise _HTTPError(404, {"message": "404 User Not Found"})
                return _json_response(200, self._user_full(user))
            case ["user"] if method == "GET":
                return _json_response(200, self._user_full(self.bot))
        raise _HTTPError(404, {"error": "404 Not Found"})

    def _route_project(self, call: _Call, method: str, tail: list[str], params: JSON) -> _Response:
        match tail:
            case [] if method == "GET":
                return _json_response(200, self._project_api())
            case ["issues"] if method == "GET":
                iids = self._list_issue_iids(params)
                return self._page(call, iids, lambda i: self._issue_bytes(self._issues[i]))
            case ["issues", iid] if method == "GET":
                return _Response(200, self._issue_bytes(self._issue(iid)))
            case ["issues", iid] if method == "PUT":
                return _Response(200, self._update_issue(self._issue(iid), params))
            case ["issues", iid, "notes"] if method == "GET":
                notes = self._sorted_notes(self._issue(iid), params)
                return self._page(call, notes, lambda n: n)
            case ["issues", iid, "notes"] if method == "POST":
                issue = self._issue(iid)
                body = str(params.get("body") or "").strip()
                if not body:
                    raise _HTTPError(400, {"error": "body is missing"})
                note = self._create_note(issue, body, self.bot["id"], self.clock(), system=False)
                return _json_response(201, note)
            case ["members", "all"] if method == "GET":
                # Reference: https://docs.gitlab.com/api/members/#list-all-members-of-a-group-or-project-including-inherited-and-invited-members
                return self._page(
                    call, self._members, lambda uid: self._user_basic(uid) | {"access_level": 30}
                )
            case ["labels"] if method == "GET":
                search = str(params.get("search") or "").lower()
                names = [n for n in sorted(self._labels, key=str.lower) if search in n.lower()]
                return self._page(call, names, lambda n: self._labels[n])
            case ["labels"] if method == "POST":
                name = str(params.get("name") or "").strip()
                if not name:
                    raise _HTTPError(400, {"error": "name is missing"})
                if name in self._labels:
                    raise _HTTPError(409, {"message": "Label already exists"})
                return _json_response(201, self.add_label(name, color=params.get("color", "#6699cc")))
        raise _HTTPError(404, {"error": "404 Not Found"})

    def _project_api(self) -> JSON:
        namespace, _, path = self.project_path.rpartition("/")
        return {
            "id": self.project_id,
            "name": path,
            "path": path,
            "path_with_namespace": self.project_path,
            "name_with_namespace": self.project_path.replace("/", " / "),
            "namespace": {"full_path": namespace, "path": namespace.rpartition("/")[2]},
            "web_url": self.project_web_url,
            "default_branch": "main",
            "issues_enabled": True,
        }

    def _list_issue_iids(self, params: JSON) -> list[int]:
        labels = params.get("labels")
        key = tuple(
            str(params.get(k))
            for k in (
                "labels",
                "state",
                "updated_after",
                "updated_before",
                "created_after",
                "created_before",
                "order_by",
                "sort",
                "assignee_username",
                "iids",
            )
        )
        cached = self._query_cache.get(key)
        if cached is not None:
            return cached
        wanted = [name.lower() for name in _split(labels)]
        state = params.get("state") or "all"
        if state not in ("opened", "closed", "all"):
            raise _HTTPError(400, {"error": "state does not have a valid value"})
        bounds = {}
        for name in ("updated_after", "updated_before", "created_after", "created_before"):
            if params.get(name):
                try:
                    bounds[name] = _parse_time(str(params[name]))
                except ValueError:
                    raise _HTTPError(400, {"error": f"{name} is invalid"}) from None
        iids = set(_ints(params["iids"])) if params.get("iids") else None
        assignee = str(params.get("assignee_username") or "").lower()
        selected = [
            issue
            for issue in self._issues.values()
            if (state == "all" or issue.state == state)
            and _labels_match(issue.labels, wanted)
            and _in_bounds(issue, bounds)
            and (iids is None or issue.iid in iids)
            and (not assignee or self._assigned_to(issue, assignee))
        ]
        order_by = params.get("order_by") or "created_at"
        if order_by not in ("created_at", "updated_at", "title"):
            order_by = "created_at"
        selected.sort(key=lambda i: (getattr(i, order_by), i.id), reverse=params.get("sort") != "asc")
        result = [issue.iid for issue in selected]
        self._query_cache[key] = result
        return result

    def _assigned_to(self, issue: _Issue, username: str) -> bool:
        return any(self._users[uid]["username"].lower() == username for uid in issue.assignee_ids)

    def _update_issue(self, issue: _Issue, params: JSON) -> bytes:
        if not any(k in params for k in _UPDATABLE):
            missing = ", ".join(_UPDATABLE) + " are missing, at least one parameter must be provided"
            raise _HTTPError(400, {"error": missing})
        state_event = params.get("state_event")
        if state_event not in (None, "close", "reopen"):
            raise _HTTPError(400, {"error": "state_event does not have a valid value"})
        if "title" in params and not str(params["title"] or "").strip():
            raise _HTTPError(400, {"message": {"title": ["can't be blank"]}})
        now = self.clock()
        before = (list(issue.labels), issue.state, list(issue.assignee_ids), issue.title, issue.description)
        self._apply_label_params(issue, params, now)
        if "assignee_ids" in params or "assignee_id" in params:
            raw = params.get("assignee_ids", params.get("assignee_id"))
            issue.assignee_ids = [uid for uid in _ints(raw or []) if uid in self._users]
        if "title" in params:
            issue.title = str(params["title"])
        if "description" in params:
            issue.description = str(params["description"] or "")
        if state_event == "close" and issue.state == "opened":
            issue.state, issue.closed_at, issue.closed_by_id = "closed", now, self.bot["id"]
            self._create_note(issue, "closed", self.bot["id"], now, system=True)
        elif state_event == "reopen" and issue.state == "closed":
            issue.state, issue.closed_at, issue.closed_by_id = "opened", None, None
            self._create_note(issue, "reopened", self.bot["id"], now, system=True)
        after = (issue.labels, issue.state, issue.assignee_ids, issue.title, issue.description)
        if after != before:  # like Rails, an update that changes nothing leaves updated_at alone
            issue.updated_at = now
            self._changed(issue.iid)
        return self._issue_bytes(issue)

    def _apply_label_params(self, issue: _Issue, params: JSON, now: datetime) -> None:
        labels = list(issue.labels)
        if "labels" in params:
            labels = [self._find_or_create_label(n) for n in _split(params["labels"])]
        for name in _split(params.get("add_labels")):
            if self._find_or_create_label(name) not in labels:
                labels.append(name)
        removals = set(_split(params.get("remove_labels")))
        labels = list(dict.fromkeys(n for n in labels if n not in removals))
        added = [n for n in labels if n not in issue.labels]
        removed = [n for n in issue.labels if n not in labels]
        if added or removed:
            issue.labels = labels
            self._create_note(issue, _label_note(added, removed), self.bot["id"], now, system=True)

    def _sorted_notes(self, issue: _Issue, params: JSON) -> list[JSON]:
        key = "updated_at" if params.get("order_by") == "updated_at" else "created_at"
        notes = sorted(self._notes.get(issue.iid, []), key=lambda n: (n[key], n["id"]))
        return notes if params.get("sort") == "asc" else notes[::-1]

    def _find_users(self, params: JSON) -> list[int]:
        username = str(params.get("username") or "").lower()
        search = str(params.get("search") or "").lower()
        found = []
        for uid, user in sorted(self._users.items()):
            if username and user["username"].lower() != username:
                continue
            if search and not (
                search in user["username"].lower()
                or search in user["name"].lower()
                or search == (user["public_email"] or "").lower()
            ):
                continue
            if params.get("active") in ("true", True) and user["state"] != "active":
                continue
            found.append(uid)
        return found

    def _page(self, call: _Call, items: Sequence[Any], render: Callable[[Any], Any]) -> _Response:
        params = call.params
        try:
            per_page = min(MAX_PER_PAGE, max(1, int(params.get("per_page") or DEFAULT_PER_PAGE)))
        except ValueError:
            per_page = DEFAULT_PER_PAGE
        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        rendered = [render(item) for item in chunk]
        parts = [
            r if isinstance(r, bytes) else json.dumps(r, separators=(",", ":")).encode() for r in rendered
        ]
        body = b"[" + b",".join(parts) + b"]"
        next_page = page + 1 if page < total_pages else None
        prev_page = page - 1 if 1 < page <= total_pages + 1 else None
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(next_page or ""),
            "X-Prev-Page": str(prev_page or ""),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "Link": self._links(call, per_page, prev_page, next_page, total_pages),
        }
        return _Response(200, body, headers=headers)

    @staticmethod
    def _links(call: _Call, per_page: int, prev_page: int | None, next_page: int | None, last: int) -> str:
        # GitLab builds absolute URLs from the request's Host; python-gitlab follows rel="next".
        base = [(k, v) for k, v in call.query_pairs if k not in ("page", "per_page")]

        def url(page: int) -> str:
            query = urlencode([("page", str(page)), ("per_page", str(per_page)), *base])
            return f"http://{call.host}{call.raw_path}?{query}"

        links = []
        if prev_page:
            links.append(f'<{url(prev_page)}>; rel="prev"')
        if next_page:
            links.append(f'<{url(next_page)}>; rel="next"')
        links.append(f'<{url(1)}>; rel="first"')
        links.append(f'<{url(last)}>; rel="last"')
        return ", ".join(links)


def _params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        else:
            params[key] = value
    return params


def _label_note(added: list[str], removed: list[str]) -> str:
    """The system note GitLab writes for a label change."""
    parts = []
    if added:
        parts.append("added " + " ".join(f"~{name}" for name in added))
    if removed:
        parts.append("removed " + " ".join(f"~{name}" for name in removed))
    plural = "s" if len(added) + len(removed) > 1 else ""
    return " and ".join(parts) + f" label{plural}"


def _labels_match(labels: list[str], wanted: list[str]) -> bool:
    if not wanted:
        return True
    if wanted == ["none"]:
        return not labels
    if wanted == ["any"]:
        return bool(labels)
    have = {name.lower() for name in labels}
    return all(name in have for name in wanted)


def _in_bounds(issue: _Issue, bounds: dict[str, datetime]) -> bool:
    # GitLab's *_after and *_before are both inclusive.
    if "updated_after" in bounds and issue.updated_at < bounds["updated_after"]:
        return False
    if "updated_before" in bounds and issue.updated_at > bounds["updated_before"]:
        return False
    if "created_after" in bounds and issue.created_at < bounds["created_after"]:
        return False
    return not ("created_before" in bounds and issue.created_at > bounds["created_before"])


def _write(handler: BaseHTTPRequestHandler, response: _Response) -> None:
    handler.send_response(response.status)
    handler.send_header("Content-Type", response.content_type)
    handler.send_header("Content-Length", str(len(response.body)))
    for name, value in response.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed process, say) is GitLab's everyday life, not a stand-in bug."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(stand_in: GitLabStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as python-gitlab's session expects
        timeout = 60
        # Headers and body leave in one segment: no 40 ms Nagle/delayed-ACK stall per request.
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024

        def _handle(self) -> None:
            stand_in._serve(self)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


__all__ = ["GitLabStandIn", "RecordedRequest", "iso"]
