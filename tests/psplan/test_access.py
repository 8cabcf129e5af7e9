"""Every page and endpoint refuses anonymous users, except sign-in and the health check."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

PUBLIC = {"/login/", "/healthz", "/admin/login/"}
# Single sign-on's steps are public by nature; they answer 404 while SSO is not configured.
SSO = {"/sso/login/", "/sso/callback/"}


def _all_paths(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _all_paths(entry, pattern)
        elif isinstance(entry, URLPattern):
            yield "/" + _fill_in(pattern)


def _fill_in(pattern: str) -> str:
    """A concrete path for a route or regex pattern, with every parameter replaced by a plausible value."""
    path = re.sub(r"<(?:int:)?(?:\w+:)?(\w+)>", "1", pattern)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)
    path = re.sub(r"\\\.\(\?P<format>[^)]*\)", "", path)
    return path.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")


ALL_PATHS = sorted(set(_all_paths()))


def test_url_discovery_sees_the_app_admin_and_public_pages():
    assert {"/issues/", "/sync/", "/admin/", "/login/", "/healthz"} <= set(ALL_PATHS)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [p for p in ALL_PATHS if p not in PUBLIC | SSO])
def test_anonymous_request_is_refused(client, path):
    response = client.get(path)
    if response.status_code in (301, 302):
        assert response.url.split("?")[0] in ("/login/", "/admin/login/"), (
            f"{path} redirects to {response.url}"
        )
    else:
        assert response.status_code in (401, 403, 404, 405), f"{path} answered {response.status_code}"
        assert response.status_code != 404 or path.startswith(("/admin/", "/static/")), f"{path} is 404"


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_public_pages_answer_anonymous_users(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(SSO))
def test_single_sign_on_is_not_there_until_configured(client, path):
    assert client.get(path).status_code == 404
