from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP
from psplan.tokens import create_token
from tests.factories import EngagementManagerFactory, UserFactory
from tests.standins.salesforce import SalesforceStandIn, django_settings_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium: Playwright's own browser download is not available here."""
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


def database_url() -> str:
    """The test database as a DATABASE_URL, for a process the test starts (a worker, a killed sync)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    name = str(db["NAME"])
    if "memory" in name or not name:
        pytest.skip(
            "the test database is in memory: a worker process cannot open it (bin/test uses PostgreSQL)"
        )
    return f"sqlite:///{name}"


def sqlite_process_env(database: Path, **overrides: str) -> dict[str, str]:
    """The environment for a manage.py process a test starts on its own SQLite database: this one's, without
    GitLab, Salesforce, Celery or database settings, with psplan.settings and a fresh secret key."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITLAB_", "SALESFORCE_", "CELERY_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="psplan.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=f"sqlite:///{database}",
        **overrides,
    )
    return env


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The throwaway Redis that bin/test starts on loopback."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.fail("TEST_REDIS_URL is not set: run the suite with bin/test, which starts Redis")
    return url


@pytest.fixture
def salesforce(settings, monkeypatch) -> Iterator[SalesforceStandIn]:
    """The Salesforce stand-in (HTTPS with its own CA), and PS Plan's settings pointing at it."""
    with SalesforceStandIn() as standin:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", standin.ca_bundle_path)
        for name, value in django_settings_for(standin).items():
            setattr(settings, name, value)
        yield standin


@pytest.fixture
def reader(db):
    """A signed-in user with no role: leadership reads everything, changes nothing."""
    return UserFactory(username="leader")


@pytest.fixture
def em_user(db):
    user = UserFactory(username="em")
    user.groups.add(Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)[0])
    EngagementManagerFactory(user=user, name="Priya Raman", gitlab_username="praman")
    return user


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def reader_client(client, reader):
    client.force_login(reader)
    return client


@pytest.fixture
def em_client(client, em_user):
    client.force_login(em_user)
    return client


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def token_for():
    """The key of a new API token for a user (PS Plan keeps only its digest, so each call makes one)."""
    keys: dict[int, str] = {}

    def make(user) -> str:
        if user.pk not in keys:
            keys[user.pk] = create_token(user=user, lifetime=None)[1]
        return keys[user.pk]

    return make
