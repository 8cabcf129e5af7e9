"""Start-up refuses unsafe or malformed configuration with a message naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(50)


def _start(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "GITLAB_", "SALESFORCE_", "PSPLAN_"))
    }
    clean.pop("DATABASE_URL", None)
    clean.pop("CELERY_BROKER_URL", None)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "psplan.settings", "PSPLAN_ENV_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_key_refuses_to_start():
    result = _start(DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_the_env_file_fills_in_what_the_environment_leaves_unset(tmp_path):
    env_file = tmp_path / "psplan.env"
    env_file.write_text(f"DJANGO_SECRET_KEY={GOOD_KEY}\nDJANGO_DEBUG=1\n")
    from_file = _start(PSPLAN_ENV_FILE=str(env_file))
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.strip() == "True"
    assert _start(PSPLAN_ENV_FILE=str(env_file), DJANGO_DEBUG="0").stdout.strip() == "False"


def test_debug_mode_starts_with_zero_configuration():
    result = _start(DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("PSPLAN_FISCAL_YEAR_START_MONTH", "13"),
        ("PSPLAN_FISCAL_YEAR_START_MONTH", "feb"),
        ("PSPLAN_STALE_AFTER_MONTHS", "0"),
        ("GITLAB_URL", "gitlab.example.com"),
        ("SALESFORCE_INSTANCE_URL", "http://example.my.salesforce.com"),
        ("SALESFORCE_API_VERSION", "v59"),
        ("CELERY_BROKER_URL", "localhost:6379"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("CACHE_URL", "nosuchcache://x"),
        ("DJANGO_HTTPS", "maybe"),
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "X Forwarded Proto"),
        ("PSPLAN_SESSION_IDLE_HOURS", "0"),
        ("PSPLAN_PROXY_COUNT", "-1"),
        ("PSPLAN_SIGNIN_FAILURE_LIMIT", "0"),
        ("OIDC_RP_CLIENT_ID", "psplan"),
        ("PSPLAN_API_TOKEN_FAILURE_RATE", "twenty"),
        ("PSPLAN_API_THROTTLE_RATE", "6000"),
        ("OIDC_OP_TOKEN_ENDPOINT", "idp.example.com/token"),
        ("PSPLAN_CURRENCY", "dollars"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(variable, value):
    result = _start(**{"DJANGO_SECRET_KEY": GOOD_KEY, variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_integrations_are_off_without_credentials(settings):
    assert settings.GITLAB_ENABLED is False
    assert settings.SALESFORCE_ENABLED is False


@pytest.mark.django_db
def test_postgresql_connections_run_without_the_jit_compiler():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting; bin/test runs the suite on PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
