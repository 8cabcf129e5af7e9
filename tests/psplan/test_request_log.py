"""One JSON line per request on the `psplan.requests` logger, with nothing secret in it."""

from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def request_lines(caplog):
    caplog.set_level(logging.INFO, logger="psplan.requests")

    def lines() -> list[dict]:
        return [
            json.loads(record.getMessage()) for record in caplog.records if record.name == "psplan.requests"
        ]

    return lines


def test_each_request_logs_one_line_with_method_path_status_duration_and_user(
    admin_client, admin_user, request_lines
):
    admin_client.get("/issues/?stage=SOW_WIP")
    [line] = request_lines()
    assert line["method"] == "GET"
    assert (line["path"], line["query"]) == ("/issues/", {"stage": "SOW_WIP"})
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["user_id"] == admin_user.pk


def test_anonymous_refusals_and_missing_pages_are_logged_too(client, request_lines):
    client.get("/issues/")
    client.get("/no-such-page/")
    assert [(line["status"], line["user_id"]) for line in request_lines()] == [(302, None), (404, None)]


def test_secret_looking_query_values_never_reach_the_log(client, request_lines, caplog):
    client.get("/login/?next=/issues/&token=tk-123&code=oidc-code-456&password=hunter2&api_key=k-789")
    [line] = request_lines()
    assert line["query"]["next"] == "/issues/"
    assert {line["query"][name] for name in ("token", "code", "password", "api_key")} == {"[hidden]"}
    assert not any(secret in caplog.text for secret in ("tk-123", "oidc-code-456", "hunter2", "k-789"))


def test_the_authorization_header_is_never_logged(token_for, reader, request_lines, caplog):
    key = token_for(reader)
    APIClient(headers={"Authorization": f"Token {key}"}).get("/api/v1/scoping-issues/")
    [line] = request_lines()
    assert line["user_id"] == reader.pk
    assert key not in caplog.text
