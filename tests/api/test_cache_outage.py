"""With CACHE_URL on Redis, the app keeps answering when Redis goes away: token checks never needed the
cache, and throttles count in each server process until Redis is back. Nothing answers 500."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from rest_framework.test import APIClient

from psplan.api import PerUserRateThrottle
from psplan.authentication import TokenFailureThrottle

pytestmark = [pytest.mark.django_db, pytest.mark.services]

LIST = "/api/v1/scoping-issues/"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_cache(url: str) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Redis for this test alone on loopback, so the test can stop it (bin/test installs redis-server)."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run the suite with bin/test")
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url, server
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def closed_port_cache(settings):
    settings.CACHES = _redis_cache(f"redis://127.0.0.1:{_free_port()}/0")


def test_the_api_and_pages_keep_answering_when_redis_stops(
    settings, own_redis, api_client_for, reader, admin_client
):
    url, server = own_redis
    settings.CACHES = _redis_cache(url)
    api = api_client_for(reader)
    assert api.get(LIST).status_code == 200
    server.terminate()
    server.wait(timeout=10)
    assert [api.get(LIST).status_code for _ in range(3)] == [200] * 3
    assert admin_client.get("/issues/").status_code == 200
    assert admin_client.get("/api/token/").status_code == 200


def test_a_revoked_token_is_refused_while_redis_is_down(closed_port_cache, api_client_for, reader):
    api = api_client_for(reader)
    assert api.get(LIST).status_code == 200
    reader.auth_token_set.all().delete()
    assert api.get(LIST).status_code == 401


def test_wrong_tokens_are_still_throttled_in_the_process_while_redis_is_down(closed_port_cache, monkeypatch):
    monkeypatch.setattr(TokenFailureThrottle, "rate", "3/minute", raising=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token guess")
    statuses = [client.get(LIST, REMOTE_ADDR="203.0.113.99").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_users_are_still_throttled_in_the_process_while_redis_is_down(closed_port_cache, monkeypatch, em_api):
    monkeypatch.setattr(PerUserRateThrottle, "rate", "3/minute", raising=False)
    assert [em_api.get(LIST).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_with_redis_up_the_throttle_counts_live_in_redis(
    settings, redis_url, monkeypatch, reader_api, reader
):
    settings.CACHES = _redis_cache(redis_url)
    assert reader_api.get(LIST).status_code == 200
    keys = redis.Redis.from_url(redis_url).keys(f"*counter:user:{reader.pk}:*")
    assert keys, "the per-user counter should be in the shared Redis"
