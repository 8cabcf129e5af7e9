"""/api/token/: a signed-in user creates, lists and revokes their own API tokens; keys are shown once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from psplan.models import ApiToken
from psplan.tokens import MAX_TOKENS_PER_USER, create_token
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/api/token/"
KEY = re.compile(r'<code class="token-key">(psplan_[0-9a-f]{64})</code>')


def _api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/scoping-issues/").status_code


def _create(client, lifetime: str = "never") -> str:
    html = client.post(PAGE, {"action": "create", "lifetime": lifetime}).content.decode()
    return KEY.search(html).group(1)


def test_the_page_needs_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_a_user_without_a_token_is_offered_one(reader_client):
    html = reader_client.get(PAGE).content.decode()
    assert "You have no token." in html
    assert 'value="create"' in html


def test_creating_a_token_shows_the_key_once_and_it_works(reader_client):
    key = _create(reader_client)
    assert _api_status(key) == 200
    later = reader_client.get(PAGE).content.decode()
    assert key not in later
    assert f"{key[:15]}…" in later


def test_the_database_keeps_only_a_digest_of_the_key(reader_client, reader):
    key = _create(reader_client)
    stored = ApiToken.objects.filter(user=reader).values().get()
    assert not any(key in str(value) for value in stored.values())
    assert stored["token_key"] == key[:15]


def test_a_token_with_an_expiry_stops_working_when_it_expires(reader_client, reader):
    key = _create(reader_client, lifetime="30")
    with time_machine.travel(timezone.now() + timedelta(days=29)):
        assert _api_status(key) == 200
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        refused = client.get("/api/v1/scoping-issues/")
        assert refused.status_code == 401
        assert "expired" in refused.json()["detail"]
        reader_client.force_login(reader)  # the browser session itself ended long ago
        assert "expired" in reader_client.get(PAGE).content.decode()


def test_a_user_may_keep_several_tokens_one_per_tool(reader_client):
    first, second = _create(reader_client), _create(reader_client)
    assert first != second
    assert (_api_status(first), _api_status(second)) == (200, 200)


def test_revoking_a_token_stops_it_at_once_and_leaves_the_others_alone(reader_client, reader):
    _, other_users_key = create_token(user=UserFactory(), lifetime=None)
    kept, revoked = _create(reader_client), _create(reader_client)
    response = reader_client.post(PAGE, {"action": "revoke", "token": revoked[:15]}, follow=True)
    assert "revoked" in response.content.decode()
    assert _api_status(revoked) == 401
    assert (_api_status(kept), _api_status(other_users_key)) == (200, 200)


def test_a_user_cannot_revoke_someone_else_s_token(reader_client):
    _, other_users_key = create_token(user=UserFactory(), lifetime=None)
    reader_client.post(PAGE, {"action": "revoke", "token": other_users_key[:15]})
    assert _api_status(other_users_key) == 200


def test_a_user_has_at_most_a_set_number_of_tokens(reader_client, reader):
    for _ in range(MAX_TOKENS_PER_USER):
        create_token(user=reader, lifetime=None)
    html = reader_client.post(PAGE, {"action": "create", "lifetime": "never"}).content.decode()
    assert "revoke one first" in html
    assert not KEY.search(html)
    assert ApiToken.objects.filter(user=reader).count() == MAX_TOKENS_PER_USER


def test_an_unknown_lifetime_creates_nothing(reader_client, reader):
    html = reader_client.post(PAGE, {"action": "create", "lifetime": "forever"}).content.decode()
    assert not KEY.search(html)
    assert not ApiToken.objects.filter(user=reader).exists()


def test_an_unknown_action_is_refused(reader_client):
    assert reader_client.post(PAGE, {"action": "steal"}).status_code == 400


def test_the_forms_need_the_csrf_token(reader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    assert client.post(PAGE, {"action": "create", "lifetime": "never"}).status_code == 403
    assert not ApiToken.objects.filter(user=reader).exists()


def test_the_page_is_not_cached(reader_client):
    assert "no-cache" in reader_client.get(PAGE)["Cache-Control"]
