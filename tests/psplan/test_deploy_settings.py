"""Production settings: `check --deploy` is clean, HTTPS is on by default and can be turned off, weak
secret keys are refused."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(50)


def _production(*command: str, **env: str) -> subprocess.CompletedProcess:
    """Run a command with production settings (psplan.settings, DJANGO_DEBUG=0) and only `env` set."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "GITLAB_", "SALESFORCE_", "PSPLAN_", "OIDC_", "CELERY_", "CACHE_"))
    }
    clean.pop("DATABASE_URL", None)
    environment = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "psplan.settings",
        "PSPLAN_ENV_FILE": "",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": GOOD_KEY,
        "DJANGO_ALLOWED_HOSTS": "psplan.example.com",
        **env,
    }
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def _settings(*names: str, **env: str) -> dict:
    program = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))"
    )
    done = _production(sys.executable, "-c", program, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_deploy_check_finds_nothing_to_warn_about(tmp_path):
    done = _production(
        sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout
    assert "WARNING" not in done.stdout + done.stderr


def test_production_turns_on_https_redirect_hsts_secure_cookies_and_the_proxy_header():
    values = _settings(
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER", "SECURE_REDIRECT_EXEMPT",
    )  # fmt: skip
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_REDIRECT_EXEMPT": ["^healthz$"],
    }


def test_a_plain_http_internal_network_turns_it_all_off_with_one_variable():
    values = _settings(
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER",
        DJANGO_HTTPS="0",
    )  # fmt: skip
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SESSION_COOKIE_SECURE": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_single_parts_can_be_switched_off_alone():
    values = _settings(
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE",
        DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_HSTS_SECONDS="0",
    )  # fmt: skip
    assert values == {"SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 0, "SESSION_COOKIE_SECURE": True}


@pytest.mark.parametrize(
    "key",
    [
        "changeme",
        "x" * 60,
        "ab" * 30,
        "django-insecure-" + secrets.token_urlsafe(50),
        secrets.token_urlsafe(30),
    ],
    ids=["short", "one character", "two characters", "django-insecure prefix", "49 characters"],
)
def test_production_refuses_a_weak_secret_key_without_printing_it(key):
    done = _production(sys.executable, "-c", "import django; django.setup()", DJANGO_SECRET_KEY=key)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak" in done.stderr
    assert key not in done.stderr


def test_debug_mode_accepts_a_short_development_key():
    done = _production(
        sys.executable, "-c", "import django; django.setup()", DJANGO_DEBUG="1", DJANGO_SECRET_KEY="dev"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_except_the_health_check(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    redirected = client.get("/issues/")
    assert (redirected.status_code, redirected.url) == (301, "https://testserver/issues/")
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_behind_a_tls_proxy_requests_count_as_https_and_get_hsts(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_the_session_idle_timeout_is_a_setting():
    assert _settings("SESSION_COOKIE_AGE") == {"SESSION_COOKIE_AGE": 8 * 3600}
    assert _settings("SESSION_COOKIE_AGE", PSPLAN_SESSION_IDLE_HOURS="0.5") == {"SESSION_COOKIE_AGE": 1800}
