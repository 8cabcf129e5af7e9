"""Wrong API tokens are throttled per client address: past the limit, 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from psplan.authentication import TokenFailureThrottle

pytestmark = pytest.mark.django_db

LIST = "/api/v1/scoping-issues/"


@pytest.fixture(autouse=True)
def three_failures_a_minute(monkeypatch):
    monkeypatch.setattr(TokenFailureThrottle, "rate", "3/minute", raising=False)


def _get(key: str, address: str = "203.0.113.7"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(LIST, REMOTE_ADDR=address)


def test_wrong_tokens_past_the_limit_get_429_with_retry_after(reader):
    assert [_get(f"guess-{n}").status_code for n in range(3)] == [401] * 3
    refused = _get("guess-4")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "wrong API tokens" in refused.json()["detail"]


def test_while_throttled_even_a_right_token_from_that_address_gets_429(reader, token_for):
    key = token_for(reader)
    for n in range(4):
        _get(f"guess-{n}")
    assert _get(key).status_code == 429


def test_other_addresses_are_not_affected(reader, token_for):
    key = token_for(reader)
    for n in range(4):
        _get(f"guess-{n}", address="203.0.113.7")
    assert _get(key, address="198.51.100.9").status_code == 200


def test_right_tokens_are_never_counted(reader, token_for):
    key = token_for(reader)
    assert {_get(key).status_code for _ in range(10)} == {200}


def test_the_address_may_try_again_in_the_next_window(reader, token_for):
    key = token_for(reader)
    for n in range(4):
        _get(f"guess-{n}")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert _get(key).status_code == 200


def test_a_malformed_authorization_header_counts_as_a_wrong_token(reader):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token two parts")
    statuses = [client.get(LIST, REMOTE_ADDR="203.0.113.7").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
