"""Optional sign-in through an OpenID Connect provider (mozilla-django-oidc), off unless OIDC_RP_CLIENT_ID
is set. Roles come from a claim (PSPLAN_OIDC_ROLES_CLAIM) on every SSO sign-in; password sign-in stays
for the demo and for break-glass admins."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from psplan.permissions import set_roles

logger = logging.getLogger(__name__)


class RoleMappingBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, plus: the ID token must be meant for PS Plan (audience, and the
    issuer when OIDC_OP_ISSUER is set), users get their names, and their roles follow the claim."""

    def authenticate(self, request, **kwargs):
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as refusal:
            # A bad token is a refused sign-in, shown on the sign-in page, not a bare 400.
            logger.warning("Single sign-on refused: %s", refusal)
            return None

    def verify_token(self, token: str, **kwargs) -> dict[str, Any]:
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience or []
        # The library leaves these checks out: a token issued to another application must not sign in here.
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued to another client.")
        if settings.OIDC_OP_ISSUER and payload.get("iss") != settings.OIDC_OP_ISSUER:
            raise SuspiciousOperation("The ID token comes from another issuer.")
        return payload

    def get_userinfo(self, access_token, id_token, payload) -> dict[str, Any]:
        # Providers put the roles claim in the ID token, in userinfo, or in both.
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def create_user(self, claims):
        return self.update_user(super().create_user(claims), claims)

    def update_user(self, user, claims):
        user.first_name = str(claims.get("given_name", user.first_name))[:150]
        user.last_name = str(claims.get("family_name", user.last_name))[:150]
        user.save(update_fields=["first_name", "last_name"])
        roles = _roles_in(claims)
        set_roles(
            user=user,
            engagement_manager=bool(roles & set(settings.PSPLAN_OIDC_EDITOR_ROLES)),
            admin=bool(roles & set(settings.PSPLAN_OIDC_ADMIN_ROLES)),
        )
        return user


def _roles_in(claims: dict[str, Any]) -> set[str]:
    roles = claims.get(settings.PSPLAN_OIDC_ROLES_CLAIM) or []
    # Some providers send one space-separated string instead of a list.
    return set(roles.split()) if isinstance(roles, str) else {str(role) for role in roles}


def _only_when_configured(view):
    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        return view(request, *args, **kwargs)

    return login_not_required(guarded)


start = _only_when_configured(OIDCAuthenticationRequestView.as_view())
callback = _only_when_configured(OIDCAuthenticationCallbackView.as_view())
