from __future__ import annotations

import os

import pytest

from tests.scoping.conftest import gitlab_on, gitlab_server  # noqa: F401  (the GitLab stand-in fixtures)

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def signed_in_page(page, live_server, transactional_db):
    """A Chromium page signed in through the real sign-in form."""

    def sign_in(username: str, password: str = "correct horse battery staple"):
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login/" not in url)
        return page

    return sign_in
