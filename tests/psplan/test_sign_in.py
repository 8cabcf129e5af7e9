"""Sign-in: lockout after repeated failures (per username and per address), idle sessions, sign-out."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LIMIT = 5


@pytest.fixture
def em(db):
    return UserFactory(username="em")


def _sign_in(
    client, username: str, password: str, *, address: str = "203.0.113.7", page: str = "/login/", **headers
):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def _signed_in(response) -> bool:
    return response.status_code == 302 and not response.url.startswith("/login/")


def test_a_wrong_password_shows_the_form_again_with_an_error(client, em):
    response = _sign_in(client, "em", "wrong")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_repeated_wrong_passwords_lock_the_username_and_then_even_the_right_one_is_refused(client, em):
    statuses = [_sign_in(client, "em", f"wrong-{n}").status_code for n in range(LIMIT)]
    assert statuses == [200] * (LIMIT - 1) + [429]
    locked = _sign_in(client, "em", PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_page_says_what_happened_how_long_it_lasts_and_who_can_unlock(client, em):
    for n in range(LIMIT):
        response = _sign_in(client, "em", f"wrong-{n}")
    html = response.content.decode()
    assert "Too many failed sign-ins" in html
    assert "15 minutes" in html
    assert "axes_reset_username" in html
    assert 'role="alert"' in html


def test_the_username_stays_locked_from_another_address(client, em):
    for n in range(LIMIT):
        _sign_in(client, "em", f"wrong-{n}", address="203.0.113.7")
    assert _sign_in(Client(), "em", PASSWORD, address="198.51.100.9").status_code == 429


def test_wrong_passwords_for_many_usernames_lock_that_address_only(client, em):
    for n in range(LIMIT):
        _sign_in(client, f"guess{n}", "wrong", address="203.0.113.7")
    assert _sign_in(Client(), "em", PASSWORD, address="203.0.113.7").status_code == 429
    assert _signed_in(_sign_in(Client(), "em", PASSWORD, address="198.51.100.9"))


def test_admin_sign_in_locks_out_too(client, em):
    em.is_staff = True
    em.save()
    for n in range(LIMIT):
        response = _sign_in(client, "em", f"wrong-{n}", page="/admin/login/")
    assert response.status_code == 429
    assert _sign_in(Client(), "em", PASSWORD, page="/admin/login/").status_code == 429


def test_the_lockout_ends_by_itself_after_the_cool_off(client, em):
    for n in range(LIMIT):
        _sign_in(client, "em", f"wrong-{n}")
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert _signed_in(_sign_in(Client(), "em", PASSWORD))


def test_a_successful_sign_in_forgets_the_earlier_failures(client, em):
    for n in range(LIMIT - 1):
        _sign_in(client, "em", f"wrong-{n}")
    assert _signed_in(_sign_in(Client(), "em", PASSWORD))
    for n in range(LIMIT - 1):
        _sign_in(client, "em", f"wrong-again-{n}")
    assert _signed_in(_sign_in(Client(), "em", PASSWORD))


def test_staff_unlock_a_username_with_the_axes_command(client, em):
    for n in range(LIMIT):
        _sign_in(client, "em", f"wrong-{n}")
    call_command("axes_reset_username", "em")
    call_command("axes_reset_ip", "203.0.113.7")
    assert _signed_in(_sign_in(Client(), "em", PASSWORD))


def test_staff_unlock_by_deleting_the_attempts_in_the_admin(client, em, admin_client):
    for n in range(LIMIT):
        _sign_in(client, "em", f"wrong-{n}")
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    listing = admin_client.get("/admin/axes/accessattempt/").content.decode()
    assert "em" in listing
    admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert not AccessAttempt.objects.exists()
    assert _signed_in(_sign_in(Client(), "em", PASSWORD))


def test_behind_a_proxy_the_address_it_forwards_counts_and_a_forged_one_does_not(client, em, settings):
    settings.PSPLAN_PROXY_COUNT = 1
    for n in range(LIMIT):
        # The client wrote the first entry itself; the proxy appended the real address.
        forged = f"10.9.9.{n}, 203.0.113.7"
        _sign_in(client, f"guess{n}", "wrong", address="192.0.2.1", HTTP_X_FORWARDED_FOR=forged)
    blocked = _sign_in(Client(), "em", PASSWORD, address="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert blocked.status_code == 429
    other = _sign_in(Client(), "em", PASSWORD, address="192.0.2.1", HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert _signed_in(other)


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_ends_after_eight_idle_hours(client, em):
    client.force_login(em)
    with time_machine.travel(timezone.now() + timedelta(hours=8, minutes=1)):
        response = client.get("/issues/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_activity_keeps_a_session_alive_past_eight_hours(client, em):
    start = timezone.now()
    client.force_login(em)
    for hours in (6, 12, 18):
        with time_machine.travel(start + timedelta(hours=hours)):
            assert client.get("/issues/").status_code == 200


def test_signing_out_ends_the_session_on_the_server_too(client, em):
    client.force_login(em)
    session_cookie = client.cookies["sessionid"].value
    client.post("/logout/")
    assert not Session.objects.filter(session_key=session_cookie).exists()
    replay = Client()
    replay.cookies["sessionid"] = session_cookie
    response = replay.get("/issues/")
    assert response.status_code == 302 and response.url.startswith("/login/")
