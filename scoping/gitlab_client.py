"""The one way PS Plan talks to GitLab: python-gitlab behind small dataclasses and our errors."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import gitlab
import gitlab.const
import gitlab.exceptions
import requests
from requests.exceptions import ChunkedEncodingError
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

# python-gitlab's own retry loop sleeps without a cap (a Retry-After of an hour means an
# hour), cannot be made faster in tests and crashes on an HTTP-date Retry-After. It is
# switched off on every call; _ResilientSession below retries instead.
_ONE_TRY: dict[str, Any] = {"obey_rate_limit": False, "max_retries": 0}

# GitLab did not act on the request: safe to send it again whatever its method.
_NOT_ACTED_ON = frozenset({429, 503})
# Transient failures after which GitLab may have acted: only idempotent requests go again.
_TRANSIENT = frozenset({500, 502, 503, 504, *range(520, 531)})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class GitLabError(Exception):
    """Anything that went wrong talking to GitLab."""


class GitLabUnavailable(GitLabError):
    """GitLab could not be used: down, too slow, rate-limiting, or the token is rejected.

    `retry_after` is how many seconds GitLab asked us to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GitLabRefused(GitLabError):
    """GitLab answered, and refused the request with a 4xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitLab refused the request ({status}): {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class GitLabIssue:
    id: int
    iid: int
    title: str
    description: str
    web_url: str
    state: str
    labels: tuple[str, ...]
    assignee_usernames: tuple[str, ...]
    author_username: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    assignee_ids: tuple[int, ...] = ()

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> GitLabIssue:
        """Build from GitLab's issue JSON."""
        closed_at = data.get("closed_at")
        return cls(
            id=int(data["id"]),
            iid=int(data["iid"]),
            title=data.get("title") or "",
            description=data.get("description") or "",
            web_url=data.get("web_url") or "",
            state=data["state"],
            labels=tuple(data.get("labels") or ()),
            assignee_usernames=tuple(a["username"] for a in data.get("assignees") or ()),
            author_username=(data.get("author") or {}).get("username", ""),
            created_at=_parse_time(data["created_at"]),
            updated_at=_parse_time(data["updated_at"]),
            closed_at=_parse_time(closed_at) if closed_at else None,
            assignee_ids=tuple(int(a["id"]) for a in data.get("assignees") or () if "id" in a),
        )

    @classmethod
    def from_hook(cls, payload: dict[str, Any]) -> GitLabIssue:
        """Build from an Issue Hook payload (which names no author: author_username is empty)."""
        # Reference: https://docs.gitlab.com/user/project/integrations/webhook_events/#work-item-events
        attrs = payload["object_attributes"]
        labels = payload.get("labels") or attrs.get("labels") or ()
        closed_at = attrs.get("closed_at")
        return cls(
            id=int(attrs["id"]),
            iid=int(attrs["iid"]),
            title=attrs.get("title") or "",
            description=attrs.get("description") or "",
            web_url=attrs.get("url") or "",
            state=attrs["state"],
            labels=tuple(label["title"] for label in labels),
            assignee_usernames=tuple(a["username"] for a in payload.get("assignees") or ()),
            author_username="",
            created_at=parse_hook_time(attrs["created_at"]),
            updated_at=parse_hook_time(attrs["updated_at"]),
            closed_at=parse_hook_time(closed_at) if closed_at else None,
            assignee_ids=tuple(int(i) for i in attrs.get("assignee_ids") or ()),
        )


@dataclass(frozen=True)
class IssueHook:
    """An Issue Hook: the issue as the payload shows it and who changed it."""

    issue: GitLabIssue
    project_id: int | None
    project_path: str
    actor_username: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> IssueHook:
        """Read an Issue Hook payload; KeyError/ValueError/TypeError when it is not one."""
        project = payload.get("project") or {}
        return cls(
            issue=GitLabIssue.from_hook(payload),
            project_id=_optional_int(project.get("id")),
            project_path=project.get("path_with_namespace") or "",
            actor_username=(payload.get("user") or {}).get("username", ""),
        )


@dataclass(frozen=True)
class NoteHook:
    """A Note Hook on an issue: which comment, on which issue, by whom, when."""

    note_id: int
    issue_iid: int
    author_username: str
    created_at: datetime
    system: bool
    project_id: int | None
    project_path: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> NoteHook | None:
        """Read a Note Hook payload; None for a comment on anything but an issue."""
        # Reference: https://docs.gitlab.com/user/project/integrations/webhook_events/#comment-events
        attrs = payload["object_attributes"]
        if attrs.get("noteable_type") != "Issue" or not payload.get("issue"):
            return None
        project = payload.get("project") or {}
        return cls(
            note_id=int(attrs["id"]),
            issue_iid=int(payload["issue"]["iid"]),
            author_username=(payload.get("user") or {}).get("username", ""),
            created_at=parse_hook_time(attrs["created_at"]),
            system=bool(attrs.get("system")),
            project_id=_optional_int(project.get("id") or attrs.get("project_id")),
            project_path=project.get("path_with_namespace") or "",
        )


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str
    email: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> GitLabUser:
        """Build from GitLab's user JSON; email is the public email, which may be hidden."""
        return cls(
            id=int(data["id"]),
            username=data["username"],
            name=data.get("name") or "",
            email=data.get("public_email") or "",
        )


@dataclass(frozen=True)
class GitLabNote:
    id: int
    body: str
    created_at: datetime
    author_username: str = ""
    system: bool = False

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> GitLabNote:
        """Build from GitLab's note JSON."""
        return cls(
            id=int(data["id"]),
            body=data["body"],
            created_at=_parse_time(data["created_at"]),
            author_username=(data.get("author") or {}).get("username", ""),
            system=bool(data.get("system")),
        )


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_hook_time(value: str) -> datetime:
    """Webhook times come as ISO 8601 or, from older GitLab, as `2015-05-17 18:21:36 UTC`."""
    text = str(value).strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        return _parse_time(text)
    except ValueError:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
        return parsed


def _optional_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _api_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("GitLab times must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _ResilientSession(requests.Session):
    """A requests session that counts every attempt and retries transient failures."""

    def __init__(self, *, max_retries: int, backoff_base: float, backoff_cap: float) -> None:
        super().__init__()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.request_count = 0
        self.last_attempts = 0
        self.last_server_delay: float | None = None
        self._not_before = 0.0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send, retrying with capped exponential backoff or the server's Retry-After."""
        method = (request.method or "GET").upper()
        attempt = 0
        while True:
            self._wait_for_quota()
            self.request_count += 1
            self.last_attempts = attempt + 1
            try:
                response = super().send(request, **kwargs)
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
                if attempt >= self.max_retries or not _may_resend(method, exc):
                    raise
                delay = self._backoff(attempt)
            else:
                if response.status_code != 429:  # a 429's own wait is Retry-After, below
                    self._note_quota(response.headers)
                self.last_server_delay = (
                    _server_delay(response.headers) if response.status_code in _NOT_ACTED_ON else None
                )
                if attempt >= self.max_retries or not _may_repeat(method, response.status_code):
                    return response
                delay = self.last_server_delay
                delay = self._backoff(attempt) if delay is None else min(delay, self.backoff_cap)
                response.close()
            attempt += 1
            time.sleep(delay)

    def _note_quota(self, headers: Any) -> None:
        # GitLab announces an exhausted quota before it starts answering 429: pause until it resets.
        if headers.get("RateLimit-Remaining", "").strip() == "0":
            delay = _server_delay({"RateLimit-Reset": headers.get("RateLimit-Reset", "")})
            if delay:
                self._not_before = time.monotonic() + min(delay, self.backoff_cap)

    def _wait_for_quota(self) -> None:
        pause = self._not_before - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def _backoff(self, attempt: int) -> float:
        # Jitter keeps several workers from retrying in lockstep after a GitLab hiccup.
        ceiling = min(self.backoff_cap, self.backoff_base * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def _may_repeat(method: str, status: int) -> bool:
    return status in _NOT_ACTED_ON or (method in _IDEMPOTENT and status in _TRANSIENT)


def _may_resend(method: str, exc: Exception) -> bool:
    # A request that never reached GitLab can always go again; one that was sent and then
    # lost its answer may have been applied, so a POST (a comment) is not sent twice.
    if method in _IDEMPOTENT or isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _server_delay(headers: Any) -> float | None:
    """Seconds the server asked us to wait, from Retry-After or RateLimit-Reset."""
    # Reference: https://docs.gitlab.com/security/rate_limits/#headers
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                pass
    reset = headers.get("RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None


def _message(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip() or "no message"


class GitLabClient:
    """GitLab REST v4 for one project, with retries and our own errors and dataclasses."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        project: str,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._session = _ResilientSession(
            max_retries=max_retries, backoff_base=backoff_base, backoff_cap=backoff_cap
        )
        self._gl = gitlab.Gitlab(
            url=url,
            private_token=token,
            timeout=timeout,
            session=self._session,
            retry_transient_errors=False,
            user_agent=f"psplan {gitlab.const.USER_AGENT}",
        )
        # lazy=True: no request until the first real call, and none per call either.
        self._project = self._gl.projects.get(project, lazy=True)

    @classmethod
    def from_settings(cls, *, max_retries: int | None = None) -> GitLabClient:
        """Build from the GITLAB_* settings; `max_retries` overrides GITLAB_MAX_RETRIES."""
        from django.conf import settings

        if not getattr(settings, "GITLAB_TOKEN", ""):
            raise GitLabUnavailable("GitLab is not configured: GITLAB_TOKEN is not set")
        if max_retries is None:
            max_retries = int(getattr(settings, "GITLAB_MAX_RETRIES", 5))
        return cls(
            url=settings.GITLAB_URL,
            token=settings.GITLAB_TOKEN,
            project=str(settings.GITLAB_PROJECT),
            timeout=float(getattr(settings, "GITLAB_TIMEOUT", 10.0)),
            max_retries=max_retries,
            backoff_base=float(getattr(settings, "GITLAB_BACKOFF_BASE", 0.5)),
            backoff_cap=float(getattr(settings, "GITLAB_BACKOFF_CAP", 30.0)),
        )

    @property
    def request_count(self) -> int:
        """HTTP requests actually sent so far, retries included."""
        return self._session.request_count

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> GitLabClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def iter_issues(
        self,
        *,
        label: str | None,
        updated_after: datetime | None = None,
        iids: Iterable[int] | None = None,
        order_by: str = "updated_at",
    ) -> Iterator[GitLabIssue]:
        """Issues carrying `label` (or any, for None), open and closed, oldest first, page by page.

        `order_by="created_at"` keeps a long listing stable while issues are edited: ordered by
        updated_at, an issue edited mid-listing jumps to the end and shifts another one past us.
        """
        # Reference: https://docs.gitlab.com/api/issues/#list-project-issues
        if order_by not in ("updated_at", "created_at"):
            raise ValueError(f"order_by must be updated_at or created_at, not {order_by!r}")
        filters: dict[str, Any] = {"state": "all", "order_by": order_by, "sort": "asc", "per_page": 100}
        if label is not None:
            filters = {"labels": label, **filters}
        if updated_after is not None:
            filters["updated_after"] = _api_time(updated_after)
        if iids is not None:
            filters["iids[]"] = [int(iid) for iid in iids]
        # http_list hands back plain dicts: building a python-gitlab object (nine managers and
        # a deep copy) per issue would cost more than the HTTP itself on a 10,000-issue sync.
        path = self._project.issues.path
        with self._translated_errors():
            for data in self._gl.http_list(path, iterator=True, **filters, **_ONE_TRY):
                yield GitLabIssue.from_api(data)

    def get_issue(self, iid: int) -> GitLabIssue:
        """One issue by its project-scoped number."""
        # Reference: https://docs.gitlab.com/api/issues/#single-project-issue
        with self._translated_errors():
            issue = self._project.issues.get(iid, **_ONE_TRY)
        return GitLabIssue.from_api(issue.attributes)

    def update_issue(
        self,
        iid: int,
        *,
        add_labels: Iterable[str] = (),
        remove_labels: Iterable[str] = (),
        state_event: str | None = None,
        assignee_ids: list[int] | None = None,
    ) -> GitLabIssue:
        """Apply only the given change in one PUT, so edits made meanwhile survive."""
        # Reference: https://docs.gitlab.com/api/issues/#edit-an-issue
        data = self._issue_change(add_labels, remove_labels, state_event, assignee_ids)
        with self._translated_errors():
            answer = self._project.issues.update(iid, data, **_ONE_TRY)
        return GitLabIssue.from_api(answer)

    @staticmethod
    def _issue_change(
        add_labels: Iterable[str],
        remove_labels: Iterable[str],
        state_event: str | None,
        assignee_ids: list[int] | None,
    ) -> dict[str, Any]:
        added, removed = list(dict.fromkeys(add_labels)), list(dict.fromkeys(remove_labels))
        if set(added) & set(removed):
            raise ValueError(f"labels both added and removed: {sorted(set(added) & set(removed))}")
        if any("," in name for name in added + removed):
            raise ValueError("GitLab label names cannot contain commas")
        if state_event not in (None, "close", "reopen"):
            raise ValueError(f"state_event must be 'close' or 'reopen', not {state_event!r}")
        data: dict[str, Any] = {}
        if added:
            data["add_labels"] = ",".join(added)
        if removed:
            data["remove_labels"] = ",".join(removed)
        if state_event:
            data["state_event"] = state_event
        if assignee_ids is not None:
            data["assignee_ids"] = list(assignee_ids)
        if not data:
            raise ValueError("update_issue needs at least one change")
        return data

    def create_note(self, iid: int, body: str) -> GitLabNote:
        """Comment on an issue."""
        # Reference: https://docs.gitlab.com/api/notes/#create-new-issue-note
        issue = self._project.issues.get(iid, lazy=True)
        with self._translated_errors():
            note = issue.notes.create({"body": body}, **_ONE_TRY)
        return GitLabNote.from_api(note.attributes)

    def recent_notes(self, iid: int, *, limit: int = 20) -> list[GitLabNote]:
        """The issue's latest comments (system notes included), newest first."""
        # Reference: https://docs.gitlab.com/api/notes/#list-project-issue-notes
        issue = self._project.issues.get(iid, lazy=True)
        with self._translated_errors():
            notes = issue.notes.list(
                order_by="created_at", sort="desc", per_page=limit, get_all=False, **_ONE_TRY
            )
            return [GitLabNote.from_api(note.attributes) for note in notes]

    def current_user(self) -> GitLabUser:
        """The user the token belongs to: PS Plan's own account in GitLab."""
        # Reference: https://docs.gitlab.com/api/users/#get-the-current-user
        with self._translated_errors():
            return GitLabUser.from_api(self._gl.http_get("/user", **_ONE_TRY))  # type: ignore[arg-type]

    def project_label_names(self) -> frozenset[str]:
        """Names of every label usable in the project (its own and its groups')."""
        # Reference: https://docs.gitlab.com/api/labels/#list-labels
        with self._translated_errors():
            labels = self._project.labels.list(iterator=True, per_page=100, **_ONE_TRY)
            return frozenset(label.name for label in labels)

    def create_label(self, name: str, *, color: str = "#6b4fbb") -> None:
        """Create a project label; one that exists already (409, another run was first) is fine."""
        # Reference: https://docs.gitlab.com/api/labels/#create-a-new-label
        try:
            with self._translated_errors():
                self._project.labels.create({"name": name, "color": color}, **_ONE_TRY)
        except GitLabRefused as exc:
            if exc.status != 409:
                raise

    def project_member_users(self) -> list[GitLabUser]:
        """Everyone who can be assigned in the project (direct and inherited members), with names."""
        # Reference: https://docs.gitlab.com/api/members/#list-all-members-of-a-group-or-project-including-inherited-and-invited-members
        with self._translated_errors():
            members = self._project.members_all.list(iterator=True, per_page=100, **_ONE_TRY)
            return [
                GitLabUser(
                    id=int(m.id),
                    username=m.username,
                    name=m.name or "",
                    email=getattr(m, "public_email", "") or "",
                )
                for m in members
            ]

    def find_user(
        self, *, username: str | None = None, email: str | None = None, name: str | None = None
    ) -> GitLabUser | None:
        """The one GitLab user with this username, else public email, else full name."""
        if username:
            found = self.user_by_username(username)
            if found is not None:
                return found
        if email:
            found = self._user_by_public_email(email)
            if found is not None:
                return found
        if name:
            return self._user_by_name(name)
        return None

    def user_by_username(self, username: str) -> GitLabUser | None:
        """The user with exactly this username, or None."""
        # Reference: https://docs.gitlab.com/api/users/#list-users
        with self._translated_errors():
            matches = self._gl.users.list(username=username, get_all=False, **_ONE_TRY)
        return self._user(matches[0].id) if matches else None

    def _user_by_public_email(self, email: str) -> GitLabUser | None:
        # GitLab's user search matches a public email exactly, but the list omits it.
        wanted = email.strip().casefold()
        for user_id in self._search_users(email.strip()):
            user = self._user(user_id)
            if user.email.casefold() == wanted:
                return user
        return None

    def _user_by_name(self, name: str) -> GitLabUser | None:
        wanted = " ".join(name.split())
        matches = [
            user_id
            for user_id, full_name in self._search_users(wanted, with_names=True)
            if " ".join(full_name.split()).casefold() == wanted.casefold()
        ]
        # Two people with the same name cannot be told apart: an admin links them.
        return self._user(matches[0]) if len(matches) == 1 else None

    def _search_users(self, term: str, *, with_names: bool = False) -> list[Any]:
        # Reference: https://docs.gitlab.com/api/users/#list-users
        with self._translated_errors():
            users = self._gl.users.list(search=term, active="true", iterator=True, per_page=100, **_ONE_TRY)
            return [(u.id, u.name) if with_names else u.id for u in users]

    def _user(self, user_id: int) -> GitLabUser:
        # Reference: https://docs.gitlab.com/api/users/#get-a-single-user
        with self._translated_errors():
            return GitLabUser.from_api(self._gl.users.get(user_id, **_ONE_TRY).attributes)

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """Turn python-gitlab and requests failures into GitLabUnavailable or GitLabRefused."""
        try:
            yield
        except gitlab.exceptions.GitlabAuthenticationError as exc:
            raise GitLabUnavailable(
                f"GitLab at {self.url} rejected the token (401 Unauthorized): "
                "check GITLAB_TOKEN and that it has the api scope"
            ) from exc
        except gitlab.exceptions.GitlabError as exc:
            raise self._from_gitlab_error(exc) from exc
        except requests.Timeout as exc:
            raise GitLabUnavailable(
                f"GitLab at {self.url} did not answer within {self.timeout:g} s ({self._attempts()})"
            ) from exc
        except requests.RequestException as exc:
            raise GitLabUnavailable(
                f"GitLab at {self.url} could not be reached or dropped the connection "
                f"({self._attempts()}): {type(exc).__name__}"
            ) from exc

    def _from_gitlab_error(self, exc: gitlab.exceptions.GitlabError) -> GitLabError:
        status = exc.response_code
        message = _message(exc.error_message)
        wait = self._session.last_server_delay
        if status == 429:
            return GitLabUnavailable(
                f"GitLab is rate-limiting PS Plan ({self._attempts()})", retry_after=wait
            )
        if status is None or status >= 500:
            what = f"answered {status}" if status else f"sent an unusable answer ({message})"
            return GitLabUnavailable(f"GitLab at {self.url} {what} ({self._attempts()})", retry_after=wait)
        if status >= 400:
            return GitLabRefused(status, message)
        return GitLabUnavailable(f"GitLab at {self.url} answered {status}: {message}")

    def _attempts(self) -> str:
        attempts = self._session.last_attempts
        return f"{attempts} attempt{'s' if attempts != 1 else ''}"


__all__ = [
    "GitLabClient",
    "GitLabError",
    "GitLabIssue",
    "GitLabNote",
    "GitLabRefused",
    "GitLabUnavailable",
    "GitLabUser",
    "IssueHook",
    "NoteHook",
    "parse_hook_time",
]
