"""Single sign-on with OpenID Connect, end to end against a local provider over real HTTP.

The Django test client plays the browser on PS Plan's side; `requests` follows the provider's redirect,
as a browser would; PS Plan's backend fetches the token, the JWKS and userinfo from the provider itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP, can_edit, is_admin
from tests.factories import UserFactory
from tests.standins.oidc import OIDCStandIn

pytestmark = pytest.mark.django_db

PRIYA = {
    "sub": "idp-user-17",
    "email": "priya.raman@example.com",
    "given_name": "Priya",
    "family_name": "Raman",
    "groups": ["engagement_managers", "everyone"],
}


@pytest.fixture
def provider(settings) -> Iterator[OIDCStandIn]:
    with OIDCStandIn() as standin:
        for name, value in standin.django_settings().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "psplan.sso.RoleMappingBackend",
        ]
        yield standin


def _sign_in_through(client, provider: OIDCStandIn, claims: dict, next_page: str = ""):
    """PS Plan → the provider (which signs `claims` in at once) → PS Plan's callback; its last answer."""
    provider.next_user = claims
    start = client.get("/sso/login/" + (f"?next={next_page}" if next_page else ""))
    assert start.status_code == 302 and start.url.startswith(provider.issuer + "/authorize?")
    at_provider = requests.get(start.url, allow_redirects=False, timeout=10)
    assert at_provider.status_code == 302
    back = at_provider.headers["Location"].removeprefix("http://testserver")
    return client.get(back)


def _signed_in_user(client):
    return get_user_model().objects.filter(pk=client.session.get("_auth_user_id")).first()


def test_the_sign_in_page_offers_single_sign_on_beside_the_password(client, provider):
    html = client.get("/login/").content.decode()
    assert 'href="/sso/login/"' in html
    assert 'name="password"' in html


def test_a_new_user_signs_in_with_names_and_the_editor_role_from_the_groups_claim(client, provider):
    response = _sign_in_through(client, provider, PRIYA)
    assert (response.status_code, response.url) == (302, "/home/")
    user = _signed_in_user(client)
    assert (user.email, user.get_full_name()) == ("priya.raman@example.com", "Priya Raman")
    assert can_edit(user) and not is_admin(user)
    assert client.get("/issues/").status_code == 200


def test_sign_in_returns_to_the_page_asked_for(client, provider):
    response = _sign_in_through(client, provider, PRIYA, next_page="/reports/forecast/")
    assert response.url == "/reports/forecast/"


def test_the_admin_role_makes_an_admin_and_losing_it_takes_it_away(client, provider, settings):
    _sign_in_through(client, provider, {**PRIYA, "groups": ["psplan_admins"]})
    assert is_admin(_signed_in_user(client))
    assert client.get("/admin/").status_code == 200
    client.post("/logout/")
    _sign_in_through(client, provider, {**PRIYA, "groups": []})
    user = _signed_in_user(client)
    assert not is_admin(user) and not can_edit(user)


def test_an_existing_user_is_found_by_email_and_keeps_their_account(client, provider):
    existing = UserFactory(username="praman", email="Priya.Raman@example.com")
    existing.groups.add(Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)[0])
    _sign_in_through(client, provider, {**PRIYA, "groups": ["everyone"]})
    user = _signed_in_user(client)
    assert user.pk == existing.pk
    assert not can_edit(user)  # the provider's claim decides the role at every SSO sign-in


def test_an_id_token_issued_to_another_application_does_not_sign_in(client, provider):
    provider.audience = "some-other-app"
    response = _sign_in_through(client, provider, PRIYA)
    assert response.url == "/login/?sso=failed"
    assert _signed_in_user(client) is None
    assert "Single sign-on did not sign you in" in client.get(response.url).content.decode()


def test_an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused(client, provider):
    provider.sign_with_unknown_key = True
    response = _sign_in_through(client, provider, PRIYA)
    assert response.url == "/login/?sso=failed"
    assert _signed_in_user(client) is None


def test_a_callback_cannot_be_replayed(client, provider):
    provider.next_user = PRIYA
    start = client.get("/sso/login/")
    back = requests.get(start.url, allow_redirects=False, timeout=10).headers["Location"]
    client.get(back.removeprefix("http://testserver"))
    client.post("/logout/")
    replay = client.get(back.removeprefix("http://testserver"))
    assert replay.status_code in (302, 400)
    assert _signed_in_user(client) is None


def test_password_sign_in_still_works_for_break_glass_admins(client, provider):
    UserFactory(username="breakglass", is_staff=True, is_superuser=True)
    response = client.post("/login/", {"username": "breakglass", "password": "correct horse battery staple"})
    assert (response.status_code, response.url) == (302, "/home/")
    assert provider.token_requests == 0
