"""API tokens: made, listed and revoked by their owner on /api/token/ (staff revoke them in the admin)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from knox.models import AuthToken

from psplan.models import ApiToken

MAX_TOKENS_PER_USER = 10
LIFETIMES = {
    "30": ("30 days", timedelta(days=30)),
    "90": ("90 days", timedelta(days=90)),
    "365": ("1 year", timedelta(days=365)),
    "never": ("No expiry", None),
}


def create_token(*, user: AbstractBaseUser, lifetime: timedelta | None) -> tuple[AuthToken, str]:
    """A new token and its key: the only time the key exists outside the caller, PS Plan keeps a digest."""
    if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
        raise ValidationError(f"You already have {MAX_TOKENS_PER_USER} tokens: revoke one first.")
    return AuthToken.objects.create(user=user, expiry=lifetime)


def revoke_token(*, user: AbstractBaseUser, token_key: str) -> bool:
    """Delete the user's token that starts with `token_key`; False when there is none."""
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    return bool(deleted)


def revoke_all_tokens(*, user: AbstractBaseUser) -> int:
    """Delete every token of the user; how many there were."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


class CreateTokenForm(forms.Form):
    lifetime = forms.ChoiceField(
        label="Expires after",
        choices=[(value, label) for value, (label, _) in LIFETIMES.items()],
        initial="90",
    )


# /api/ is outside the site-wide sign-in middleware (the API answers 401 itself), so this page signs in here.
@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_token(request):
    """The user's tokens by the start of their key; a new key is shown once, in the answer that made it."""
    new_key = None
    form = CreateTokenForm()
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            form = CreateTokenForm(request.POST)
            new_key = _create_from(request, form)
        elif action == "revoke":
            if revoke_token(user=request.user, token_key=request.POST.get("token", "")):
                messages.success(request, "The token is revoked; tools using it are now refused.")
            return redirect("api-token")
        else:
            return HttpResponseBadRequest("Unknown action", content_type="text/plain")
    tokens = ApiToken.objects.for_user(request.user)
    return render(request, "psplan/api_token.html", {"tokens": tokens, "new_key": new_key, "form": form})


def _create_from(request, form: CreateTokenForm) -> str | None:
    if not form.is_valid():
        return None
    try:
        _, key = create_token(user=request.user, lifetime=LIFETIMES[form.cleaned_data["lifetime"]][1])
    except ValidationError as exc:
        form.add_error(None, exc)
        return None
    return key
