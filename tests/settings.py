"""The production settings module, given the few things a test run needs that production must not default."""

import os

# Long and varied enough for production's check; bin/test sets a fresh random one for each run.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-" + "kV3p9QzL1mX7rT2bN8wY4cF6hJ0sD5gA" * 2)

from psplan.settings import *  # noqa: F403

# Hashing passwords with PBKDF2 costs ~0.3 s per sign-in; tests sign in thousands of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The manifest needs `collectstatic` first; tests render templates without that step.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405

# Tests speak plain HTTP (the test client, and live_server for Playwright); production redirects to HTTPS.
SECURE_SSL_REDIRECT = False
