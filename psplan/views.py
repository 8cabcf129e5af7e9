from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from opportunities.choices import SyncKind
from opportunities.models import SyncRun

# The runs that count as a successful sync of each system.
_SYNC_KINDS = {
    "gitlab": (SyncKind.GITLAB_FULL, SyncKind.GITLAB_INCREMENTAL),
    "salesforce": (SyncKind.SALESFORCE_FULL, SyncKind.SALESFORCE_INCREMENTAL),
}


class SignInView(auth_views.LoginView):
    """Password sign-in, with single sign-on offered beside it when it is configured."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "sso_enabled": settings.OIDC_ENABLED,
            "sso_failed": self.request.GET.get("sso") == "failed",
        }


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any driver error means the database is not usable
        return f"error: {type(exc).__name__}"


def _broker_status() -> str:
    if not settings.CELERY_BROKER_URL:
        return "not configured (tasks run in-process)"
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=1) as broker:
            broker.ensure_connection(max_retries=1, timeout=1)
        return "ok"
    except Exception as exc:  # kombu wraps transport errors in many types
        return f"error: {type(exc).__name__}"


def _sync_ages(last_successes: dict[str, datetime]) -> dict[str, float | None]:
    """Seconds since each system's latest successful sync (full or incremental); None if it never had one."""
    now = timezone.now()
    ages: dict[str, float | None] = {}
    for system, kinds in _SYNC_KINDS.items():
        finished = [last_successes[kind] for kind in kinds if kind in last_successes]
        ages[system] = round((now - max(finished)).total_seconds()) if finished else None
    return ages


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Liveness for load balancers and people: database, broker, last successful syncs. No secrets.

    503 with "degraded" when the database, or a configured broker, cannot be reached.
    """
    database, broker = _database_status(), _broker_status()
    healthy = database == "ok" and not broker.startswith("error")
    last_successes = SyncRun.objects.last_successes() if database == "ok" else {}
    body = {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "broker": broker,
        "gitlab_sync": "enabled" if settings.GITLAB_ENABLED else "disabled",
        "salesforce_sync": "enabled" if settings.SALESFORCE_ENABLED else "disabled",
        "last_successful_sync": {kind: when.isoformat() for kind, when in last_successes.items()},
        "seconds_since_last_successful_sync": _sync_ages(last_successes) if database == "ok" else {},
    }
    return JsonResponse(body, status=200 if healthy else 503)
