"""bin/run serves PS Plan from SQLite with the demo data; the suite runs on PostgreSQL. This test runs the EM's
pages on SQLite as bin/run sets it up, in a process of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import sqlite_process_env

ROOT = Path(__file__).resolve().parents[2]

# Migrates a fresh SQLite database, loads the demo as bin/run does, and prints each page's status as JSON.
_VISIT_AS_EM = """
import json
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
from scoping.models import ScopingIssue

call_command("migrate", verbosity=0)
call_command("seed_demo", verbosity=0)
setup_test_environment()
client = Client()
client.force_login(get_user_model().objects.get(username="em"))
iid = ScopingIssue.objects.order_by("iid").values_list("iid", flat=True).first()
paths = ["/my-work/", "/boards/", "/boards/?engagement_manager=all", "/triage/", f"/issues/{iid}/"]
print(json.dumps({path: client.get(path).status_code for path in paths}))
"""


def test_the_em_pages_answer_on_sqlite_with_the_demo_data(tmp_path):
    env = sqlite_process_env(tmp_path / "demo.sqlite3", DJANGO_DEBUG="1")

    done = subprocess.run(
        [sys.executable, "-c", _VISIT_AS_EM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(statuses) == 5
    assert set(statuses.values()) == {200}, statuses
