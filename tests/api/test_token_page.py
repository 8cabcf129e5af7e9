"""/api/token/: a signed-in user creates, sees and revokes their own API token."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/api/token/"


def _api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/scoping-issues/").status_code


def test_the_page_needs_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_a_user_without_a_token_is_offered_one(reader_client):
    html = reader_client.get(PAGE).content.decode()
    assert "You have no token." in html
    assert 'value="create"' in html


def test_creating_a_token_shows_the_key_once_and_it_works(reader_client, reader):
    html = reader_client.post(PAGE, {"action": "create"}).content.decode()
    key = Token.objects.get(user=reader).key
    assert key in html
    assert _api_status(key) == 200
    later = reader_client.get(PAGE).content.decode()
    assert key not in later
    assert f"…{key[-4:]}" in later


def test_replacing_a_token_stops_the_old_one(reader_client, reader):
    reader_client.post(PAGE, {"action": "create"})
    old = Token.objects.get(user=reader).key
    reader_client.post(PAGE, {"action": "create"})
    new = Token.objects.get(user=reader).key
    assert old != new
    assert (_api_status(old), _api_status(new)) == (401, 200)


def test_revoking_a_token_stops_it_and_leaves_other_users_alone(reader_client, reader):
    other = Token.objects.create(user=UserFactory())
    reader_client.post(PAGE, {"action": "create"})
    key = Token.objects.get(user=reader).key
    response = reader_client.post(PAGE, {"action": "revoke"}, follow=True)
    assert "revoked" in response.content.decode()
    assert not Token.objects.filter(user=reader).exists()
    assert _api_status(key) == 401
    assert _api_status(other.key) == 200


def test_an_unknown_action_is_refused(reader_client):
    assert reader_client.post(PAGE, {"action": "steal"}).status_code == 400


def test_the_forms_need_the_csrf_token(reader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    assert client.post(PAGE, {"action": "create"}).status_code == 403
    assert not Token.objects.filter(user=reader).exists()


def test_the_page_is_not_cached(reader_client):
    assert "no-cache" in reader_client.get(PAGE)["Cache-Control"]
