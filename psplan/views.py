from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from opportunities.models import SyncRun


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


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Liveness for load balancers and people: database, broker, last successful syncs. No secrets."""
    database = _database_status()
    body = {
        "status": "ok" if database == "ok" else "error",
        "database": database,
        "broker": _broker_status(),
        "gitlab_sync": "enabled" if settings.GITLAB_ENABLED else "disabled",
        "salesforce_sync": "enabled" if settings.SALESFORCE_ENABLED else "disabled",
        "last_successful_sync": {
            kind: when.isoformat() for kind, when in SyncRun.objects.last_successes().items()
        }
        if database == "ok"
        else {},
    }
    return JsonResponse(body, status=200 if database == "ok" else 503)
