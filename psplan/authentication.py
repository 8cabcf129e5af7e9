"""API sign-in by token: one digest lookup per request, and wrong tokens throttled per client address.

Its own module because DRF imports the authentication classes named in settings while `rest_framework.views`
loads, before psplan.api (which needs those views) could finish loading.
"""

from __future__ import annotations

from django.utils import timezone
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.authentication import get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle

from psplan import counters
from psplan.network import client_address


class TokenFailureThrottle(SimpleRateThrottle):
    """Wrong API tokens per client address. Past the rate, every token from that address is refused
    with 429 until the window ends, so guessing gains nothing from the answers."""

    scope = "token_failures"

    def refuse_if_over(self, address: str) -> None:
        window = counters.peek(self._name(address), seconds=self.duration)
        if self.rate is not None and window.count >= self.num_requests:
            raise Throttled(
                wait=window.retry_after,
                detail="Too many wrong API tokens from your address; try again later.",
            )

    def record_failure(self, address: str) -> None:
        counters.hit(self._name(address), seconds=self.duration)

    def _name(self, address: str) -> str:
        return f"{self.scope}:{address}"


class TokenAuthentication(knox_auth.TokenAuthentication):
    """`Authorization: Token <key>`, checked against knox's SHA-512 digests in one query per request.

    Nothing is cached: a token revoked or expired, or a user deactivated, is refused by every server
    process at once. Wrong tokens are counted per client address (TokenFailureThrottle).
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
        token = AuthToken.objects.select_related("user").filter(digest=digest).first()
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if token.expiry is not None and token.expiry <= timezone.now():
            raise AuthenticationFailed("This token has expired: create a new one on /api/token/.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
