"""Django for a benchmark: settings from the environment given, on a database made for this run only."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def django_on_throwaway_database(environ: dict[str, str], *, unset: tuple[str, ...]) -> Iterator[str]:
    """A SQLite file in a temporary folder, or a test database beside DATABASE_URL's; yields its vendor."""
    os.environ.update({"DJANGO_SETTINGS_MODULE": "psplan.settings", "DJANGO_LOG_LEVEL": "WARNING", **environ})
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + secrets.token_urlsafe(48))
    # Benchmarks speak plain HTTP on loopback; production would redirect them to HTTPS.
    os.environ.setdefault("DJANGO_HTTPS", "0")
    for name in ("CELERY_BROKER_URL", *unset):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="psplan-bench-") as workdir:
        uses_own_database = "DATABASE_URL" in os.environ
        if not uses_own_database:
            os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        if uses_own_database:
            connection.creation.create_test_db(verbosity=0, autoclobber=True)
        else:
            call_command("migrate", verbosity=0)
        try:
            yield connection.vendor
        finally:
            if uses_own_database:
                connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
