"""The page where a signed-in user creates, sees and revokes their own API token."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from psplan.api import token_cache_key


@transaction.atomic
def create_token(*, user: AbstractBaseUser) -> Token:
    """A new key for the user; any previous key stops working at once."""
    revoke_token(user=user)
    return Token.objects.create(user=user)


def revoke_token(*, user: AbstractBaseUser) -> bool:
    """Delete the user's key; False when there was none."""
    keys = list(Token.objects.filter(user=user).values_list("key", flat=True))
    Token.objects.filter(key__in=keys).delete()
    cache.delete_many([token_cache_key(key) for key in keys])
    return bool(keys)


# /api/ is outside the site-wide sign-in middleware (the API answers 401 itself), so this page signs in here.
@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_token(request):
    """Show the token's age and a hint of it; the full key only once, in the answer that created it."""
    new_key = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = create_token(user=request.user).key
        elif action == "revoke":
            if revoke_token(user=request.user):
                messages.success(request, "Your API token is revoked; tools using it are now refused.")
            return redirect("api-token")
        else:
            return HttpResponseBadRequest("Unknown action")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "psplan/api_token.html", {"token": token, "new_key": new_key})
