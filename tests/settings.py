"""The production settings module, given the two things a test run needs that production must not default."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-a-secret")

from psplan.settings import *  # noqa: F403

# Hashing passwords with PBKDF2 costs ~0.3 s per sign-in; tests sign in thousands of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The manifest needs `collectstatic` first; tests render templates without that step.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
