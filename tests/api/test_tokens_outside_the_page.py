"""API tokens made by `drf_create_token`, revoked by staff in the admin, and carried over from plain text."""

from __future__ import annotations

import importlib
import io
import re

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from psplan.models import ApiToken
from psplan.tokens import create_token

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^Generated token (\S+) for user (\S+)$")


def _api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/scoping-issues/").status_code


def _drf_create_token(*args: str) -> str:
    out = io.StringIO()
    call_command("drf_create_token", *args, stdout=out)
    return GENERATED.fullmatch(out.getvalue().strip()).group(1)


def test_drf_create_token_prints_a_working_key_and_stores_only_its_digest(reader):
    key = _drf_create_token("leader")
    assert _api_status(key) == 200
    stored = ApiToken.objects.filter(user=reader).values().get()
    assert stored["expiry"] is None
    assert not any(key in str(value) for value in stored.values())


def test_drf_create_token_adds_a_token_and_with_reset_revokes_the_others(reader):
    first = _drf_create_token("leader")
    second = _drf_create_token("leader")
    assert (_api_status(first), _api_status(second)) == (200, 200)
    third = _drf_create_token("leader", "-r")
    assert (_api_status(first), _api_status(second), _api_status(third)) == (401, 401, 200)


def test_drf_create_token_can_give_the_token_an_expiry(reader):
    _drf_create_token("leader", "--days", "7")
    assert ApiToken.objects.get(user=reader).expiry is not None


def test_drf_create_token_for_an_unknown_user_says_so():
    with pytest.raises(CommandError, match="user nobody does not exist"):
        call_command("drf_create_token", "nobody")


def test_staff_see_tokens_in_the_admin_without_any_key(admin_client, reader):
    _, key = create_token(user=reader, lifetime=None)
    token = ApiToken.objects.get(user=reader)
    listing = admin_client.get("/admin/psplan/apitoken/").content.decode()
    detail = admin_client.get(f"/admin/psplan/apitoken/{token.pk}/change/").content.decode()
    assert "leader" in listing and key[:15] in listing
    assert key not in listing + detail
    assert admin_client.get("/admin/psplan/apitoken/add/").status_code == 403


def test_staff_revoke_a_token_in_the_admin_and_it_stops_at_once(admin_client, reader):
    _, key = create_token(user=reader, lifetime=None)
    token = ApiToken.objects.get(user=reader)
    response = admin_client.post(f"/admin/psplan/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert _api_status(key) == 401


@pytest.mark.django_db(transaction=True)
def test_plain_text_tokens_from_before_keep_working_and_their_table_is_dropped(reader):
    legacy_key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        # The table as DRF's authtoken app made it.
        cursor.execute(
            'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, user_id integer NOT NULL, '
            "created timestamp with time zone NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [legacy_key, reader.pk, "2025-01-02 03:04:05+00:00"],
        )
    migration = importlib.import_module("psplan.migrations.0002_hash_plain_text_tokens")
    with connection.schema_editor() as schema_editor:
        migration.hash_plain_text_tokens(apps, schema_editor)
    assert _api_status(legacy_key) == 200
    assert ApiToken.objects.get(user=reader).created.year == 2025
    assert "authtoken_token" not in connection.introspection.table_names()
