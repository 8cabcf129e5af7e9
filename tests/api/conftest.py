from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from psplan import counters
from tests.scoping.conftest import gitlab_on, gitlab_server  # noqa: F401  (the GitLab stand-in)


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """Throttle counters live in the cache (and in the process while it is down), which outlive a test's
    database rollback."""
    counters.clear_all()
    yield
    counters.clear_all()


@pytest.fixture
def api_client_for(token_for):
    """An API client that sends `Authorization: Token <key>` for a user, like an integrating tool."""

    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
        return client

    return make


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def reader_api(api_client_for, reader) -> APIClient:
    return api_client_for(reader)


@pytest.fixture
def em_api(api_client_for, em_user) -> APIClient:
    return api_client_for(em_user)


@pytest.fixture
def admin_api(api_client_for, admin_user) -> APIClient:
    return api_client_for(admin_user)
