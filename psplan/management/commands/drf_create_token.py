"""`manage.py drf_create_token USER`: DRF's command, but the token is stored as a digest only."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from psplan.tokens import create_token, revoke_all_tokens


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("-r", "--reset", action="store_true", help="revoke the user's other tokens first")
        parser.add_argument("--days", type=int, default=None, help="expire after this many days")

    def handle(self, *args, username: str, reset: bool, days: int | None, **options):
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"Cannot create the token: user {username} does not exist") from None
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more")
        if reset:
            revoke_all_tokens(user=user)
        try:
            _, key = create_token(user=user, lifetime=timedelta(days=days) if days else None)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        # DRF's wording, so scripts that read the key from it keep working.
        self.stdout.write(f"Generated token {key} for user {username}")
