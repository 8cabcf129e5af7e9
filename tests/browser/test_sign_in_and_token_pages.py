"""Sign-in lockout, single sign-on and API tokens as a person sees them in Chromium."""

from __future__ import annotations

import re

import pytest

from tests.factories import UserFactory
from tests.standins.oidc import OIDCStandIn

pytestmark = [pytest.mark.browser]


def test_after_repeated_wrong_passwords_the_page_says_sign_in_is_paused(page, live_server, transactional_db):
    UserFactory(username="leader")
    page.goto(f"{live_server.url}/login/")
    for attempt in range(5):
        page.get_by_label("Username").fill("leader")
        page.get_by_label("Password").fill(f"wrong-{attempt}")
        page.get_by_label("Password").press("Enter")
        page.wait_for_load_state()
        if attempt < 4:
            page.get_by_role("alert").wait_for()
    assert page.get_by_role("heading", name="Sign-in paused").is_visible()
    assert "paused for 15 minutes" in page.get_by_role("alert").inner_text()


def test_single_sign_on_in_a_real_browser(page, live_server, transactional_db, settings):
    with OIDCStandIn() as provider:
        for name, value in provider.django_settings().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "psplan.sso.RoleMappingBackend",
        ]
        provider.next_user = {
            "sub": "idp-42",
            "email": "priya@example.com",
            "given_name": "Priya",
            "family_name": "Raman",
            "groups": ["engagement_managers"],
        }
        page.goto(f"{live_server.url}/issues/")
        page.get_by_role("link", name="Sign in with single sign-on").click()
        page.wait_for_url(f"{live_server.url}/issues/")
        assert page.get_by_text("Priya Raman").is_visible()
        assert page.get_by_text("(read only)").count() == 0


def test_a_new_api_token_is_shown_once_and_can_be_revoked(signed_in_page, live_server):
    UserFactory(username="leader")
    page = signed_in_page("leader")
    page.goto(f"{live_server.url}/api/token/")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Create a token").click()
    key = page.locator("code.token-key").inner_text()
    assert re.fullmatch(r"psplan_[0-9a-f]{64}", key)
    assert page.get_by_role("cell", name=f"{key[:15]}…").is_visible()
    page.goto(f"{live_server.url}/api/token/")
    assert page.locator("code.token-key").count() == 0
    assert key not in page.content()
    page.get_by_role("button", name=f"Revoke the token starting with {key[:15]}").click()
    page.get_by_text("The token is revoked").wait_for()
    assert page.get_by_text("You have no token.").is_visible()
