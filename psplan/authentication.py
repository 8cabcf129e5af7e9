"""API sign-in by token: one digest lookup per request, and wrong tokens throttled per client address.

Its own module because DRF imports the authentication classes named in settings while `rest_framework.views`
loads, before psplan.api (which needs those views) could finish loading.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle

from psplan import counters
from psplan.network import client_address


class TokenFailureThrottle(SimpleRateThrottle):
    """Wrong API tokens per client address. Past the rate, every token from that address is refused
    with 429 until the window ends, so guessing gains nothing from the answers."""

    scope = "token_failures"

    def refuse_if_over(self, address: str) -> None:
        if self.rate is None:
            return
        window = counters.peek(self._name(address), seconds=self.duration)
        if window.count >= self.num_requests:
            raise Throttled(
                wait=window.retry_after,
                detail="Too many wrong API tokens from your address; try again later.",
            )

    def record_failure(self, address: str) -> None:
        if self.rate is not None:
            counters.hit(self._name(address), seconds=self.duration)

    def _name(self, address: str) -> str:
        return f"{self.scope}:{address}"


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>`, checked against knox's SHA-512 digests in one query per request.

    Nothing is cached: a token revoked or expired, or a user deactivated, is refused by every server
    process at once. Wrong tokens are counted per client address (TokenFailureThrottle). `request.auth`
    is the token's digest, which names the token without being it.
    """

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"token":
            return None
        throttle = TokenFailureThrottle()
        address = client_address(request)
        throttle.refuse_if_over(address)
        try:
            if len(header) != 2:
                raise AuthenticationFailed("Send the token as `Authorization: Token <key>`.")
            return self.authenticate_credentials(header[1])
        except AuthenticationFailed:
            throttle.record_failure(address)
            raise

    def authenticate_credentials(self, key: bytes):
        try:
            digest = hash_token(key.decode())
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        user, expiry = _token_owner(digest)
        if user is None:
            raise AuthenticationFailed("Invalid token.")
        if expiry is not None and expiry <= timezone.now():
            raise AuthenticationFailed("This token has expired: create a new one on /api/token/.")
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return user, digest

    def authenticate_header(self, request) -> str:
        return "Token"


def _token_owner(digest: str) -> tuple[AbstractBaseUser | None, datetime | None]:
    """The user whose token has this digest, and the token's expiry; (None, None) when there is none."""
    sql, attnames = _owner_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None, None
    expiry, *values = (_aware(value) if isinstance(value, datetime) else value for value in row)
    return get_user_model().from_db(connection.alias, attnames, values), expiry


@functools.cache
def _owner_query() -> tuple[str, list[str]]:
    """SQL for the token's expiry and its owner's columns, and the owner's field names in that order.

    Built once: compiling the same ORM query (a select_related lookup) on every request cost several
    times the query itself, on the path every API call takes (bench/api.py).
    """
    quote = connection.ops.quote_name
    user, token = get_user_model()._meta, AuthToken._meta
    user_table, token_table = quote(user.db_table), quote(token.db_table)
    expiry, owner, digest = (quote(token.get_field(name).column) for name in ("expiry", "user", "digest"))
    columns = ", ".join(f"{user_table}.{quote(field.column)}" for field in user.concrete_fields)
    sql = (
        f"SELECT {token_table}.{expiry}, {columns} FROM {token_table} "
        f"JOIN {user_table} ON {user_table}.{quote(user.pk.column)} = {token_table}.{owner} "
        f"WHERE {token_table}.{digest} = %s"
    )
    return sql, [field.attname for field in user.concrete_fields]


def _aware(moment: datetime) -> datetime:
    # What Django's converters would do: SQLite hands back naive UTC times.
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment
