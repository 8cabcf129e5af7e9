"""A small OpenID Connect provider on 127.0.0.1 for tests: the authorization code flow with PKCE,
RS256-signed ID tokens, a JWKS document and userinfo, over real HTTP.

/authorize signs in whoever the test put in `next_user` and sends the browser straight back (no login form
of its own). Knobs let a test make the provider misbehave: issue the ID token to another client, or sign
it with a key that is not in the JWKS.

    with OIDCStandIn() as provider:
        provider.next_user = {"sub": "u1", "email": "em@example.com", "groups": ["engagement_managers"]}
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "psplan"
CLIENT_SECRET = "stand-in-client-secret"
KEY_ID = "stand-in-key-1"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class OIDCStandIn:
    def __init__(self) -> None:
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.next_user: dict[str, Any] = {}
        self.audience = CLIENT_ID  # who the ID tokens are issued to
        self.sign_with_unknown_key = False
        self.token_requests = 0
        self._codes: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OIDCStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def django_settings(self) -> dict[str, Any]:
        """PS Plan's settings for signing in through this provider."""
        return {
            "OIDC_ENABLED": True,
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_ISSUER": self.issuer,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.issuer}/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.issuer}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.issuer}/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.issuer}/jwks",
        }

    # --- what the endpoints do ----------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, {"error": "invalid_request"}
        if "openid" not in query.get("scope", "").split():
            return 400, {}, {"error": "invalid_scope"}
        code = secrets.token_urlsafe(24)
        self._codes[code] = {
            "claims": dict(self.next_user),
            "nonce": query.get("nonce"),
            "redirect_uri": query["redirect_uri"],
            "challenge": query.get("code_challenge"),
        }
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"Location": back}, {}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, str], dict]:
        self.token_requests += 1
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {}, {"error": "invalid_client"}
        grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return 400, {}, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant["challenge"] and challenge != grant["challenge"]:
            return 400, {}, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant["claims"]
        return (
            200,
            {},
            {"access_token": access_token, "token_type": "Bearer", "id_token": self._id_token(grant)},
        )

    def userinfo(self, authorization: str) -> tuple[int, dict[str, str], dict]:
        claims = self._access_tokens.get(authorization.removeprefix("Bearer "))
        if claims is None:
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, {"error": "invalid_token"}
        return 200, {}, claims

    def jwks(self) -> tuple[int, dict[str, str], dict]:
        numbers = self.signing_key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "kid": KEY_ID,
            "alg": "RS256",
            "use": "sig",
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }
        return 200, {}, {"keys": [key]}

    def _id_token(self, grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {
            **grant["claims"],
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
        }
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if self.sign_with_unknown_key
            else None
        )
        return jwt.encode(claims, key or self.signing_key, algorithm="RS256", headers={"kid": KEY_ID})

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                routes = {
                    "/authorize": lambda: provider.authorize(query),
                    "/userinfo": lambda: provider.userinfo(self.headers.get("Authorization", "")),
                    "/jwks": provider.jwks,
                }
                self._answer(*routes.get(url.path, lambda: (404, {}, {"error": "not_found"}))())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {name: values[0] for name, values in parse_qs(body).items()}
                if urlsplit(self.path).path != "/token":
                    return self._answer(404, {}, {"error": "not_found"})
                return self._answer(*provider.token(form, self.headers.get("Authorization", "")))

            def _answer(self, status: int, headers: dict[str, str], body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        return Handler
