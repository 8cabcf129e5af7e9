from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import unquote_to_bytes

from django.contrib.auth import middleware as auth_middleware
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpResponse, JsonResponse

from psplan.network import client_address

request_log = logging.getLogger("psplan.requests")

# Longer than any filter, search or `next` address PS Plan makes; longer values are refused, not searched.
MAX_PARAMETER_LENGTH = 2_000
MAX_PATH_LENGTH = 2_000
# Query parameters whose values never reach the log: sign-in codes and anything named like a secret.
_SECRET_PARAMETER = re.compile(r"token|key|secret|pass|code|nonce|session|sig|auth|credential", re.IGNORECASE)
# How often an active session is saved again, which restarts its idle clock (SESSION_COOKIE_AGE).
SESSION_REFRESH_SECONDS = 60
_SESSION_SEEN = "_psplan_seen"


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's sign-in guard, except that the API answers 401/403 itself instead of redirecting."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class OddInputMiddleware:
    """400 for addresses no page or filter can use: NUL bytes (PostgreSQL refuses them in text), query
    strings that are not UTF-8 (lone surrogates included) and over-long values. One guard here, so no
    view, filter or admin page has to meet such input at all."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        problem = _odd_input(request)
        if problem is None:
            return self.get_response(request)
        field, message = problem
        if request.path_info.startswith("/api/"):
            return JsonResponse({field: [message]}, status=400)
        return HttpResponse(
            f"Bad request: {field}: {message}", status=400, content_type="text/plain; charset=utf-8"
        )


def _odd_input(request) -> tuple[str, str] | None:
    """(parameter, what is wrong) for the first odd part of the address, or None."""
    if "\x00" in request.path_info:
        return "path", "The address contains a NUL byte."
    if len(request.path_info) > MAX_PATH_LENGTH:
        return "path", f"The address is longer than {MAX_PATH_LENGTH} characters."
    raw = get_bytes_from_wsgi(request.META, "QUERY_STRING", "")
    for pair in raw.split(b"&") if raw else ():
        name, _, value = pair.partition(b"=")
        problem = _odd_parameter(name, value)
        if problem:
            return problem
    return None


def _odd_parameter(raw_name: bytes, raw_value: bytes) -> tuple[str, str] | None:
    name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
    value_bytes = unquote_to_bytes(raw_value.replace(b"+", b" "))
    name = name_bytes.decode("utf-8", errors="replace")[:100]
    try:
        name_bytes.decode("utf-8")
        value = value_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return name, "Not valid UTF-8 text."
    if "\x00" in name or "\x00" in value:
        return name, "Contains a NUL byte."
    if len(value) > MAX_PARAMETER_LENGTH:
        return name, f"Longer than {MAX_PARAMETER_LENGTH} characters."
    return None


class SlidingSessionMiddleware:
    """A signed-in session ends after SESSION_COOKIE_AGE without a request. Each request saves it again
    (at most once a minute, so busy pages do not write on every call), which restarts that clock."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # After sign-out the session is new and empty: nothing to keep alive.
        if request.user.is_authenticated and request.session.session_key:
            now = int(time.time())
            if now - request.session.get(_SESSION_SEEN, 0) >= SESSION_REFRESH_SECONDS:
                request.session[_SESSION_SEEN] = now
        return response


def mark_session_seen(sender, request, user, **kwargs) -> None:
    """At sign-in, so the first requests after it do not save the session again straight away."""
    if request is not None and hasattr(request, "session"):
        request.session[_SESSION_SEEN] = int(time.time())


class RequestLogMiddleware:
    """One JSON line per request on the `psplan.requests` logger: method, path, query (secret-looking
    values hidden), status, duration, user id and client address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if request_log.isEnabledFor(logging.INFO):
            request_log.info(json.dumps(_request_fields(request, response, started), ensure_ascii=False))
        return response


def _request_fields(request, response, started: float) -> dict:
    user = getattr(request, "user", None)
    return {
        "event": "request",
        "method": request.method,
        "path": request.path_info[:500],
        "query": _loggable_query(request),
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "user_id": user.pk if user is not None and user.is_authenticated else None,
        "client": client_address(request),
    }


def _loggable_query(request) -> dict[str, str]:
    if not request.META.get("QUERY_STRING"):
        return {}
    return {
        name[:100]: "[hidden]" if _SECRET_PARAMETER.search(name) else value[:200]
        for name, value in request.GET.items()
    }
