"""API list throughput against a bare JsonResponse view over the same rows, under gunicorn on loopback.

    uv run python bench/api.py [--rounds 40] [--batch 20] [--threads 4] [--workers 2]

Builds a throwaway SQLite database in a temp folder (migrate, then 500 issues and 500 opportunities),
serves the real app plus bench/api_urls.py's bare views with gunicorn on 127.0.0.1, and for each list
endpoint alternates batches of token-authenticated API requests (50 rows a page) with batches against
the bare view. Prints `name: value` lines ending with each `api_<endpoint>_throughput_ratio` and
`api_worst_throughput_ratio`. Bounded: a fixed number of requests, and it gives up after --timeout seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = {
    "scoping_issues": "/api/v1/scoping-issues/",
    "opportunities": "/api/v1/opportunities/",
    "engagement_managers": "/api/v1/engagement-managers/",
}
ROWS = 500
ENGAGEMENT_MANAGERS = 60


def fill() -> None:
    """Runs inside the benchmark's environment: realistic rows, one API user; prints the user's token."""
    import django

    django.setup()
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from opportunities.choices import EMConfidence, Segment
    from opportunities.models import Account, EngagementManager, Opportunity, Territory, TerritoryAssignment
    from psplan.fiscal import quarter_code
    from psplan.tokens import create_token
    from scoping.models import ScopingIssue
    from scoping.services import derived_label_fields

    now = timezone.now()
    segments, confidences = list(Segment), list(EMConfidence)
    ems = EngagementManager.objects.bulk_create(
        EngagementManager(
            name=f"Engagement Manager {n:03d}",
            email=f"em{n}@example.com",
            salesforce_user_id=f"005{n:012d}AAA",
            gitlab_username=f"em{n}",
            gitlab_user_id=5000 + n,
        )
        for n in range(ENGAGEMENT_MANAGERS)
    )
    territories = Territory.objects.bulk_create(
        Territory(name=f"Territory {n:03d}", segment=segments[n % len(segments)])
        for n in range(ENGAGEMENT_MANAGERS)
    )
    TerritoryAssignment.objects.bulk_create(
        TerritoryAssignment(territory=territory, engagement_manager=em)
        for territory, em in zip(territories, ems, strict=True)
    )
    accounts = Account.objects.bulk_create(
        Account(
            salesforce_id=f"001{n:012d}AAA", name=f"Customer {n}", territory=territories[n % len(territories)]
        )
        for n in range(ROWS)
    )
    opportunities = Opportunity.objects.bulk_create(
        Opportunity(
            salesforce_id=f"006{n:012d}AAA",
            name=f"Opportunity {n}",
            account=accounts[n],
            stage_name="3-Technical Evaluation",
            close_date=(now + timedelta(days=n % 300)).date(),
            close_quarter=quarter_code((now + timedelta(days=n % 300)).date()),
            amount=Decimal(100_000 + n),
            proserv_amount=Decimal(25_000) if n % 3 else None,
            ps_value=Decimal(20_000) if n % 2 else None,
            engagement_manager=ems[n % len(ems)],
            em_confidence=confidences[n % len(confidences)],
            em_confidence_rationale="Timing risk" if n % 4 else "",
            scoping_issue_link=f"https://gitlab.com/g/p/-/issues/{n + 1}",
            system_modstamp=now,
        )
        for n in range(ROWS)
    )
    stages = ["Open", "proposal::Strawman_WIP", "proposal::SOW_WIP", "proposal::Closed_Won"]
    issues = []
    for n in range(ROWS):
        labels = ["Services Calculator", stages[n % 4], f"Segment::{segments[n % len(segments)].value}"]
        state = "closed" if n % 4 == 3 else "opened"
        labels += ["close_qtr::Q325"] if state == "closed" else []
        issues.append(
            ScopingIssue(
                gitlab_id=700_000 + n,
                iid=n + 1,
                title=f"Scoping: customer {n}",
                web_url=f"https://gitlab.com/g/p/-/issues/{n + 1}",
                state=state,
                labels=labels,
                assignee_usernames=[ems[n % len(ems)].gitlab_username],
                created_at=now - timedelta(days=90),
                updated_at=now - timedelta(days=n % 80),
                last_activity_at=now - timedelta(days=n % 80),
                engagement_manager=ems[n % len(ems)],
                opportunity=opportunities[n],
                **derived_label_fields(labels=labels, state=state),
            )
        )
    ScopingIssue.objects.bulk_create(issues)
    user = get_user_model().objects.create_user("bench", password="not-used-for-tokens", is_staff=True)
    print(create_token(user=user, lifetime=None)[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(port: int, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not start listening in time")


class Batch:
    """`count` GETs of one path over `threads` client threads; remembers any answer that is not 200."""

    def __init__(self, port: int, path: str, headers: dict[str, str], count: int, threads: int):
        self.port, self.path, self.headers = port, path, headers
        self.remaining = count
        self.threads = threads
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def _take(self) -> bool:
        with self.lock:
            self.remaining -= 1
            return self.remaining >= 0

    def _worker(self) -> None:
        while self._take():
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("GET", self.path, headers=self.headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.errors.append(f"{self.path}: {response.status}")
            finally:
                connection.close()

    def run(self) -> float:
        workers = [threading.Thread(target=self._worker) for _ in range(self.threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - started


def _get_json(port: int, path: str, headers: dict[str, str]):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {body[:300]!r}")
    return json.loads(body)


def measure(port: int, token: str, args: argparse.Namespace) -> dict[str, float]:
    """Alternate API and bare batches per endpoint so drift in the machine hits both alike."""
    api_headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    figures: dict[str, float] = {}
    deadline = time.monotonic() + args.timeout
    for name, path in ENDPOINTS.items():
        bare_path = f"/bench/bare/{name}/"
        api_rows = len(_get_json(port, path, api_headers)["results"])
        bare_rows = len(_get_json(port, bare_path, {}))
        if api_rows != bare_rows:
            raise SystemExit(f"{name}: the API page has {api_rows} rows, the bare view {bare_rows}")
        # Warm both code paths in every worker before timing.
        Batch(port, path, api_headers, args.threads * 4, args.threads).run()
        Batch(port, bare_path, {}, args.threads * 4, args.threads).run()
        elapsed = {"api": 0.0, "bare": 0.0}
        kinds = [("api", path, api_headers), ("bare", bare_path, {})]
        for round_number in range(args.rounds):
            # Many short alternating batches, in alternating order: other load on the machine then
            # slows both kinds alike instead of whichever happened to run at the time.
            for kind, target, headers in kinds if round_number % 2 == 0 else kinds[::-1]:
                batch = Batch(port, target, headers, args.batch, args.threads)
                elapsed[kind] += batch.run()
                if batch.errors:
                    raise SystemExit(f"{len(batch.errors)} failed requests, e.g. {batch.errors[0]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up after {args.timeout} s")
        requests = args.rounds * args.batch
        figures[f"api_{name}_rows_per_page"] = api_rows
        figures[f"api_{name}_requests_per_second"] = requests / elapsed["api"]
        figures[f"bare_{name}_requests_per_second"] = requests / elapsed["bare"]
        figures[f"api_{name}_throughput_ratio"] = elapsed["bare"] / elapsed["api"]
    figures["api_worst_throughput_ratio"] = min(figures[f"api_{name}_throughput_ratio"] for name in ENDPOINTS)
    return figures


def _environment(folder: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "GITLAB_TOKEN", "SALESFORCE_INSTANCE_URL", "DATABASE_URL"}
    }
    return {
        **env,
        "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
        "DJANGO_SETTINGS_MODULE": "bench.api_settings",
        "DJANGO_SECRET_KEY": "bench-only-" + secrets.token_urlsafe(48),
        "DJANGO_DEBUG": "0",
        # Plain HTTP on loopback: production's redirect to HTTPS would answer every request with 301.
        "DJANGO_HTTPS": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
        # The benchmark's one token would otherwise hit the production rate limit within a second.
        "PSPLAN_API_THROTTLE_RATE": "100000000/minute",
        "PYTHONPATH": str(ROOT),
        # The server has no collected static files, and the API needs none.
        "PYTHONWARNINGS": "ignore:No directory at:UserWarning",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="alternating API/bare batches per endpoint")
    parser.add_argument("--batch", type=int, default=20, help="requests per batch")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--timeout", type=float, default=240, help="seconds before giving up")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="psplan-bench-api-")
    env = _environment(folder)
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        token = subprocess.run(
            [sys.executable, __file__, "fill"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "psplan.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        _wait_until_listening(port, server, timeout=30)
        print(f"rows: {ROWS}")
        print(f"gunicorn_workers: {args.workers}")
        print(f"client_threads: {args.threads}")
        print(f"requests_per_endpoint_and_kind: {args.rounds * args.batch}")
        for name, value in measure(port, token, args).items():
            print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["fill"]:
        fill()
    else:
        main()
