"""Fault drills: PS Plan's write path under crashes, outages, crowds and a lost broker, with real processes.

    uv run python bench/drills.py [--timeout 150] [--only kills,outage,crowd,webhooks,redis] [--keep-logs]

Starts its own PostgreSQL and Redis (append-only, as in docker-compose.yml) on loopback, the GitLab and
Salesforce stand-ins (tests/standins; Salesforce over TLS with a throwaway CA that REQUESTS_CA_BUNDLE
points at in every process), and as real subprocesses gunicorn, the two Celery workers of docker-compose
(deliveries; syncs) and Celery beat, with bench/drill_settings.py: production settings whose beat syncs
every few seconds. Everything it started is stopped when it ends, also when a drill fails. Run it as root,
as bin/test is (PostgreSQL runs as the postgres user through runuser).

Every run starts from the same migrated database (with one staff user and its API token) and the same
stand-in data: 120 scoping issues, 20 of them quiet for months (the stale rule closes them with a comment),
10 whose opportunity closed won (closed won), and 100 opportunities with engagement managers. It then makes
the same 150 edits through the API: two each to 50 issues (stage, segment or EM status) and to 25
opportunities (EM confidence and rationale). The runs:

    baseline  nothing goes wrong: the end state every drill is compared with
    kills     kill -9 of the sync worker during the GitLab pull and during the Salesforce pull (the next sync
              must take the dead one's lock over within a minute, and no run may stay "running"), and of
              the delivery worker at its first GitLab PUT and at its first Salesforce write; each restarted
    outage    GitLab answers 502 to everything while the first round of edits is made: Salesforce
              deliveries must keep flowing meanwhile; then Salesforce fails too for the second round; both
              recover, and GitLab's queue must drain within a minute
    crowd     two workers and two beats started together with a manual `manage.py sync`, and a second
              manual sync while the edits are made; each close_qtr label PS Plan creates was created by
              someone else a moment before (GitLab answers 409), which must defer no write
    webhooks  GitLab's webhook sends every issue change and comment twice at once under one
              Idempotency-Key, and at the end each issue event again, stale, under a new key: every
              delivery must be stored and applied once, and change nothing
    redis     Redis restarted while tasks wait in it (workers stopped), then killed with its data lost;
              pages and the API are polled, and edits made, while it is down

For each drill: lost writes (an edit answered 200, or a rule's closure, that the stand-in does not show at
the end, or that is still queued), duplicate writes (a comment posted twice, a GitLab label change sent
twice, a Salesforce update applied twice) and state differences ((record, field) pairs of PS Plan and both
stand-ins that differ from the baseline's end state). Also reported, and failing the run: answers 5xx,
deliveries out of order per record, sync runs that overlap, and waits that timed out. Ends with:

    drill_lost_writes: N
    drill_duplicate_writes: N
    drill_state_differences: N
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from glob import glob
from itertools import chain
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402

from tests.standins import salesforce as salesforce_faults  # noqa: E402
from tests.standins.gitlab import GitLabStandIn  # noqa: E402
from tests.standins.salesforce import SalesforceStandIn  # noqa: E402

TOKEN = "glpat-drills"
PROJECT = "ps/ps-plan"
PROJECT_ID = 4242
SCOPING = "Services Calculator"
DATABASE, TEMPLATE = "psplan_drill", "psplan_drill_template"
API_USER = "drill-admin"

ISSUES = 120
STALE = range(1, 21)  # quiet for months: the stale rule closes them
WON = range(21, 31)  # their opportunity closed won
EDITED_ISSUES = range(31, 81)
EDITED_OPPORTUNITIES = range(31, 56)  # by the iid of the issue the opportunity links to
ENGAGEMENT_MANAGERS = 4
# Each edited issue gets one of these pairs of API edits, the first in round one, the second in round two.
ISSUE_EDITS = (
    ({"stage": "SOW_WIP"}, {"stage": "Ready For Approval"}),
    ({"segment": "Ent_EMEA"}, {"segment": "MM_West"}),
    ({"em_status": "Waiting"}, {"em_status": "ToDo"}),
    ({"stage": "Estimate_Feedback"}, {"segment": "Ent_APAC"}),
)
OPPORTUNITY_EDITS = ("Amber", "Red")
WEBHOOK_SECRET = "drill-webhook-secret"
# What the issue asks of recovery: a dead sync's lock taken over, and GitLab's queue drained, within a minute.
RECOVERY_LIMIT = 60

SYNC_KINDS = (
    "gitlab_full",
    "gitlab_incremental",
    "salesforce_full",
    "salesforce_incremental",
    "rules",
    "em_linking",
)
# The environment of every PS Plan process: production settings, a beat fast enough for drills, a lock
# lifetime and backoffs short enough that a dead worker's work comes due within the drill.
DRILL_ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "bench.drill_settings",
    "PYTHONPATH": str(ROOT),
    "DJANGO_DEBUG": "0",
    # Plain HTTP on loopback, where production settings would redirect to HTTPS.
    "DJANGO_HTTPS": "0",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_LOG_LEVEL": "INFO",
    "DRILL_SYNC_EVERY_SECONDS": "6",
    "DRILL_SWEEP_EVERY_SECONDS": "3",
    "PSPLAN_SYNC_LOCK_TTL": "15",
    "PSPLAN_DELIVERY_BUDGET": "30",
    "GITLAB_OUTBOX_RETRY_BASE": "2",
    "GITLAB_OUTBOX_RETRY_CAP": "10",
    "GITLAB_BACKOFF_CAP": "2",
    "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


class DrillTimeout(Exception):
    """A bounded wait ran out: the drill stops there and is judged on the state it reached."""


def wait_for(what: str, condition: Callable[[], bool], timeout: float, *, every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DrillTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


# --- PostgreSQL and Redis ------------------------------------------------------------------------------


class PostgreSQL:
    """A throwaway cluster on loopback, run as the postgres user (initdb refuses root)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "pg"
        self.port = free_port()
        # The newest version installed, as bin/test picks it.
        self.bin = max(
            glob("/usr/lib/postgresql/*/bin"),
            key=lambda path: [int(n) for n in Path(path).parent.name.split(".")],
        )

    def start(self) -> None:
        self.data.mkdir()
        shutil.chown(self.folder, "postgres")
        shutil.chown(self.data, "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        log = str(self.folder / "pg.log")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", log, "-w", "start", "-o", options)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def recreate(self, database: str, *, template: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')

    def create(self, database: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')

    def _as_postgres(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{self.bin}/{program}", *args],
            check=check,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )


class Redis:
    """Redis on loopback, append-only as in docker-compose.yml, restartable with or without its data."""

    QUEUES = ("celery", "sync", "gitlab", "salesforce")

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "redis"
        self.port = free_port()
        self.client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def url(self, database: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.folder.mkdir(exist_ok=True)
        options = {
            "--bind": "127.0.0.1",
            "--port": str(self.port),
            "--daemonize": "yes",
            "--appendonly": "yes",
            "--save": "",
            "--dir": str(self.folder),
            "--pidfile": str(self.folder / "redis.pid"),
            "--logfile": str(self.folder / "redis.log"),
        }
        subprocess.run(["redis-server", *chain.from_iterable(options.items())], check=True, timeout=30)
        wait_for("Redis to answer", self._answers, 20, every=0.05)

    def restart(self) -> None:
        """A clean restart: SHUTDOWN writes the append-only file, so what was queued survives."""
        self.client.shutdown(save=False)  # the AOF is flushed either way; no RDB snapshot is wanted
        wait_for("Redis to stop", lambda: not listening(self.port), 20, every=0.05)
        self.start()

    def kill_and_lose_data(self) -> None:
        """kill -9, then its files are gone: a crash on a host whose disk did not survive."""
        os.kill(int((self.folder / "redis.pid").read_text()), signal.SIGKILL)
        wait_for("Redis to die", lambda: not listening(self.port), 20, every=0.05)
        shutil.rmtree(self.folder)

    def stop(self) -> None:
        pidfile = self.folder / "redis.pid"
        if pidfile.exists():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)

    def queued(self) -> int:
        """Task messages waiting in the Celery queues."""
        return sum(self.client.llen(name) for name in self.QUEUES)

    def flush(self) -> None:
        self.client.flushall()

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


# --- Processes ----------------------------------------------------------------------------------------


@dataclass
class Process:
    popen: subprocess.Popen
    log: Path
    offset: int
    ready: Callable[[str], bool]


class Processes:
    """PS Plan's processes of one run, by name; each leads its own process group, so kill -9 takes
    a prefork worker's children with it, as when a container or a host dies."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.running: dict[str, Process] = {}
        self.lock = threading.Lock()

    def start(self, name: str, argv: list[str], *, ready: Callable[[str], bool]) -> None:
        log = self.folder / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as output:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        with self.lock:
            self.running[name] = Process(popen, log, offset, ready)

    def wait_ready(self, name: str, timeout: float) -> None:
        process = self.running[name]

        def ready() -> bool:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{self.tail(name)}")
            with process.log.open("rb") as log:
                log.seek(process.offset)
                return process.ready(log.read().decode(errors="replace"))

        wait_for(f"{name} to start", ready, timeout)

    def alive(self, name: str) -> bool:
        process = self.running.get(name)
        return process is not None and process.popen.poll() is None

    def kill(self, name: str) -> bool:
        """kill -9 the process and its children; False when it was not running."""
        with self.lock:
            process = self.running.pop(name, None)
        if process is None:
            return False
        with suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=20)
        return True

    def stop(self, name: str, *, grace: float = 20) -> None:
        """SIGTERM (a Celery worker finishes its tasks first), then SIGKILL after `grace` seconds."""
        with self.lock:
            process = self.running.pop(name, None)
        if process is None:
            return
        try:
            os.killpg(process.popen.pid, signal.SIGTERM)
            process.popen.wait(timeout=grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    def exit_code(self, name: str, timeout: float) -> int | None:
        process = self.running[name]
        try:
            return process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def last_line(self, name: str, containing: str) -> str:
        """The last line of the latest process called `name` that contains a text, without its prefix."""
        process = self.running[name]
        with process.log.open("rb") as log:
            log.seek(process.offset)
            lines = log.read().decode(errors="replace").splitlines()
        found = [line for line in lines if containing in line]
        return found[-1].split("] ", 1)[-1] if found else ""

    def tail(self, name: str, lines: int = 15) -> str:
        log = self.folder / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def celery(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "psplan", *arguments]


def worker_argv(name: str, queues: str, concurrency: int) -> list[str]:
    """A Celery worker as docker-compose runs it (prefork), named so that two can share a host."""
    return celery(
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency}",
        f"--hostname={name}@%h",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    )


def celery_ready(text: str) -> bool:
    return " ready." in text


def beat_ready(text: str) -> bool:
    return "beat: Starting" in text


# --- The scenario --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One PATCH through the API; `record` names what it changes, `order` its place in the scenario."""

    order: int
    round: int
    path: str
    record: tuple[str, object]
    body: dict[str, str]


def seed_gitlab(gitlab: GitLabStandIn, anchor: datetime) -> None:
    """Labels PS Plan writes (the last year's close quarters are left for PS Plan to create), EMs, issues."""
    from psplan.fiscal import add_months, quarter_code
    from scoping.labels import canonical_labels, close_qtr_label

    old_quarters = [close_qtr_label(quarter_code(add_months(anchor.date(), -3 * n))) for n in range(4, 9)]
    for label in [SCOPING, *canonical_labels(), *old_quarters]:
        gitlab.add_label(label)
    for n in range(ENGAGEMENT_MANAGERS):
        gitlab.add_user(
            f"em{n}", name=f"Engagement Manager {n}", public_email=f"em{n}@example.com", member=True
        )
    for iid in range(1, ISSUES + 1):
        quiet = timedelta(days=100 + iid) if iid in STALE else timedelta(days=1 + iid % 20, hours=1)
        gitlab.add_issue(
            title=f"Scoping customer {iid}",
            labels=[SCOPING, "proposal::Strawman_WIP", "Segment::SMB"],
            assignees=[f"em{iid % ENGAGEMENT_MANAGERS}"] if iid % 3 == 0 else [],
            created_at=anchor - quiet - timedelta(days=10),
            updated_at=anchor - quiet,
        )


def seed_salesforce(salesforce: SalesforceStandIn, gitlab: GitLabStandIn, anchor: datetime) -> None:
    """Engagement managers and one opportunity per issue from #21 on; those of WON closed won."""
    ems = [
        salesforce.add_user(f"Engagement Manager {n}", f"em{n}@example.com")
        for n in range(ENGAGEMENT_MANAGERS)
    ]
    for iid in range(WON.start, ISSUES + 1):
        won = iid in WON
        salesforce.add_opportunity(
            Name=f"Deal {iid:03d}",
            StageName="Closed Won" if won else "Prospecting",
            CloseDate=anchor.date() + timedelta(days=-10 if won else 30 + iid),
            Amount=10_000 * iid,
            Engagement_Manager__c=ems[iid % ENGAGEMENT_MANAGERS],
            Scoping_Issue_Link__c=f"{gitlab.project_web_url}/-/issues/{iid}",
        )


def scenario_edits(salesforce: SalesforceStandIn) -> list[Edit]:
    """The 150 API edits, round one then round two, so a record's two edits are apart in time."""
    ids = {record["Name"]: record["Id"] for record in salesforce.records("Opportunity")}
    edits: list[Edit] = []
    for round_ in (0, 1):
        for n, iid in enumerate(EDITED_ISSUES):
            path = f"/api/v1/scoping-issues/{iid}/"
            edits.append(
                Edit(len(edits), round_, path, ("issue", iid), ISSUE_EDITS[n % len(ISSUE_EDITS)][round_])
            )
        for iid in EDITED_OPPORTUNITIES:
            opportunity = ids[f"Deal {iid:03d}"]
            body = {
                "em_confidence": OPPORTUNITY_EDITS[round_],
                "em_confidence_rationale": f"Drill edit {round_ + 1} of Deal {iid:03d}",
            }
            path = f"/api/v1/opportunities/{opportunity}/"
            edits.append(Edit(len(edits), round_, path, ("opportunity", opportunity), body))
    return edits


# --- Talking to PS Plan over HTTP ---------------------------------------------------------------------


class Client:
    """PS Plan over HTTP as a tool (API token) and a person (signed-in pages) use it; remembers 5xx."""

    def __init__(self, base: str, token: str, password: str) -> None:
        self.base, self.token, self.password = base, token, password
        self.errors: list[str] = []
        self.answers: Counter[int] = Counter()
        self.slowest_edit = 0.0  # seconds, of the PATCHes since it was last reset
        self._local = threading.local()
        self._lock = threading.Lock()

    def patch(self, path: str, body: dict[str, str]) -> int:
        return self._send(self._api(), "PATCH", path, json=body)

    def get_api(self, path: str) -> int:
        return self._send(self._api(), "GET", path)

    def post_webhook(self, event: str, key: str, payload: dict[str, Any]) -> str:
        """POST one webhook delivery as GitLab does; returns PS Plan's `status` (or the HTTP status)."""
        if not hasattr(self._local, "hooks"):
            self._local.hooks = requests.Session()
        headers = {"X-Gitlab-Token": WEBHOOK_SECRET, "X-Gitlab-Event": event, "Idempotency-Key": key}
        answers: list[requests.Response] = []
        status = self._send(
            self._local.hooks, "POST", "/webhooks/gitlab/", json=payload, headers=headers, answers=answers
        )
        return answers[0].json().get("status", str(status)) if status == 200 else str(status)

    def get_page(self, path: str) -> int:
        if not hasattr(self._local, "browser"):
            self._local.browser = self._signed_in()
        return self._send(self._local.browser, "GET", path)

    def _api(self) -> requests.Session:
        if not hasattr(self._local, "api"):
            self._local.api = requests.Session()
            self._local.api.headers.update(Authorization=f"Token {self.token}", Accept="application/json")
        return self._local.api

    def _signed_in(self) -> requests.Session:
        browser = requests.Session()
        form = browser.get(f"{self.base}/login/", timeout=30)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        answer = browser.post(
            f"{self.base}/login/",
            data={
                "username": API_USER,
                "password": self.password,
                "csrfmiddlewaretoken": csrf[1] if csrf else "",
            },
            timeout=30,
        )
        if "sessionid" not in browser.cookies:
            raise RuntimeError(f"Signing in failed: {answer.status_code}")
        return browser

    def _send(
        self,
        session: requests.Session,
        method: str,
        path: str,
        answers: list[requests.Response] | None = None,
        **options: Any,
    ) -> int:
        started = time.monotonic()
        try:
            answer = session.request(method, self.base + path, timeout=30, **options)
        except requests.RequestException as exc:
            status, problem = 0, f"{method} {path}: no answer ({type(exc).__name__})"
        else:
            status = answer.status_code
            if answers is not None:
                answers.append(answer)
            # /healthz answering 503 while the broker is down is what it is for.
            problem = f"{method} {path}: {status}" if status >= 500 and path != "/healthz" else ""
        with self._lock:
            self.answers[status] += 1
            if method == "PATCH":
                self.slowest_edit = max(self.slowest_edit, time.monotonic() - started)
            if problem:
                self.errors.append(problem)
        return status


# --- One run ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state: dict[tuple, object] = field(default_factory=dict)


class Run:
    """One run of the scenario: a fresh database, empty Redis, fresh stand-ins and processes of its own."""

    def __init__(self, name: str, services: Services, args: argparse.Namespace) -> None:
        self.name, self.services, self.timeout = name, services, args.timeout
        services.fresh()
        self.gitlab = GitLabStandIn(token=TOKEN, project_path=PROJECT, project_id=PROJECT_ID).start()
        self.salesforce = SalesforceStandIn().start()
        seed_gitlab(self.gitlab, services.anchor)
        seed_salesforce(self.salesforce, self.gitlab, services.anchor)
        self.edits = scenario_edits(self.salesforce)
        self.port = free_port()
        folder = services.folder / "runs" / name
        folder.mkdir(parents=True)
        self.processes = Processes(folder, services.environment(self.gitlab, self.salesforce))
        self.client = Client(f"http://127.0.0.1:{self.port}", services.token, services.password)
        self.accepted: list[Edit] = []
        self.gitlab_clean_from = 0  # GitLab requests before this one were answered by a fault
        self.baseline: dict[tuple, object] = {}  # the baseline run's end state, when this run is a drill
        self.outcome = Outcome(name)

    def close(self) -> None:
        self.gitlab.clear_faults()
        self.salesforce.clear_faults()
        self.processes.stop_all()
        self.gitlab.stop()
        self.salesforce.stop()

    # -- processes --

    def start_web(self) -> None:
        options = f"--bind 127.0.0.1:{self.port} --workers 2 --timeout 60 --access-logfile -"
        argv = [sys.executable, "-m", "gunicorn", "psplan.wsgi:application", *options.split()]
        self.processes.start("web", argv, ready=lambda _: listening(self.port))

    def start_worker(
        self, name: str = "worker", queues: str = "celery,gitlab,salesforce", concurrency: int = 2
    ) -> None:
        self.processes.start(name, worker_argv(name, queues, concurrency), ready=celery_ready)

    def start_sync_worker(self, name: str = "sync-worker") -> None:
        self.start_worker(name, "sync", 1)

    def start_beat(self, name: str = "beat") -> None:
        schedule = self.processes.folder / f"{name}-schedule"
        argv = celery("beat", "--loglevel=INFO", f"--schedule={schedule}")
        self.processes.start(name, argv, ready=beat_ready)

    def start_manual_sync(self, name: str) -> None:
        self.processes.start(name, [sys.executable, "manage.py", "sync"], ready=lambda _: True)

    def wait_ready(self, *names: str) -> None:
        for name in names:
            self.processes.wait_ready(name, self.timeout)

    def start_stack(self) -> None:
        """docker-compose's web, worker, sync-worker and beat."""
        self.start_web()
        self.start_worker()
        self.start_sync_worker()
        self.start_beat()
        self.wait_ready("web", "worker", "sync-worker", "beat")

    def restart(self, name: str) -> None:
        """Start one of docker-compose's processes again unless it runs."""
        if not self.processes.alive(name):
            starters = {
                "worker": self.start_worker,
                "sync-worker": self.start_sync_worker,
                "beat": self.start_beat,
            }
            starters[name]()
            self.wait_ready(name)
            say(f"{self.name}: {name} restarted")

    @contextmanager
    def restarting(self, *names: str) -> Iterator[None]:
        """Like docker-compose's `restart: unless-stopped`: any of these processes that exits starts again."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                for name in [name for name in names if not self.processes.alive(name)]:
                    why = self.processes.last_line(name, "Unrecoverable error") or "see its log"
                    self.outcome.notes.append(
                        f"{name} exited ({why}); started again, as docker-compose would"
                    )
                    self.restart(name)

        watcher = threading.Thread(target=watch, name="restart-policy", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join(self.timeout)

    def kill_on(self, hook: Callable[..., None], name: str, **match: object) -> threading.Event:
        """kill -9 `name` from a stand-in the moment the request `match` describes arrives."""
        killed = threading.Event()

        def kill() -> None:
            if self.processes.kill(name):
                say(f"{self.name}: kill -9 {name}")
            killed.set()

        hook(kill, **match)
        return killed

    def wait_event(self, event: threading.Event, what: str) -> None:
        if not event.wait(self.timeout):
            raise DrillTimeout(f"timed out after {self.timeout:.0f} s waiting for {what}")

    # -- edits and waiting --

    def make_edits(self, edits: list[Edit]) -> list[Edit]:
        """PATCH each edit, four at a time within a round; returns those not answered 200."""
        refused: list[Edit] = []
        for round_ in sorted({edit.round for edit in edits}):
            batch = [edit for edit in edits if edit.round == round_]
            with ThreadPoolExecutor(max_workers=4) as pool:
                statuses = list(pool.map(lambda edit: self.client.patch(edit.path, edit.body), batch))
            for edit, status in zip(batch, statuses, strict=True):
                (self.accepted if status == 200 else refused).append(edit)
        return refused

    def retry_edits(self, edits: list[Edit]) -> None:
        """A person whose edit failed makes it again until it is taken."""
        deadline = time.monotonic() + self.timeout
        while edits and time.monotonic() < deadline:
            time.sleep(1)
            edits = self.make_edits(edits)
        if edits:
            raise DrillTimeout(f"{len(edits)} edits still refused after {self.timeout:.0f} s")

    def settle(self, what: str) -> None:
        """Wait until no write is pending and a whole sync (both pulls and the rules) ran after that."""
        from django.utils import timezone

        say(f"{self.name}: waiting for {what} to settle")
        self.wait(f"{what}: every write delivered", lambda: not pending_writes())
        since = timezone.now()
        self.wait(
            f"{what}: a whole sync after the deliveries",
            lambda: whole_sync_since(since) and not pending_writes(),
        )

    def wait(self, what: str, condition: Callable[[], bool]) -> None:
        wait_for(what, condition, self.timeout)

    # -- judging --

    def judge(self, baseline: dict[tuple, object] | None) -> Outcome:
        """Stop everything, then judge what PS Plan and the stand-ins hold against the edits and baseline."""
        outcome = self.outcome
        outcome.problems += runs_left_running()
        self.processes.stop_all()
        outcome.state = end_state(self.gitlab, self.salesforce)
        outcome.lost = lost_writes(self)
        outcome.duplicates = duplicate_writes(self)
        outcome.problems += out_of_order(self) + overlapping_syncs() + self.client.errors
        if baseline is not None:
            outcome.differences = differences(baseline, outcome.state)
        say(f"{self.name}: runs by kind and how they ended: {run_summary()}")
        return outcome


def run_summary() -> str:
    """Every SyncRun kind with its counts per status, e.g. `gitlab_full succeeded 1 abandoned 1`."""
    from django.db.models import Count

    from opportunities.models import SyncRun

    rows = SyncRun.objects.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status")
    by_kind: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(f"{row['status']} {row['n']}")
    return "; ".join(f"{kind} {', '.join(counts)}" for kind, counts in by_kind.items())


def runs_left_running() -> list[str]:
    """Runs still "running" a minute after they started: a dead process's run must be marked abandoned."""
    from django.utils import timezone

    from opportunities.models import SyncRun

    old = SyncRun.objects.filter(
        status="running", started_at__lt=timezone.now() - timedelta(seconds=RECOVERY_LIMIT)
    )
    return [f"{run} by {run.owner} still running since {run.started_at:%H:%M:%S}" for run in old]


def pending_writes() -> int:
    from opportunities.models import SalesforceWrite
    from scoping.models import GitLabWrite

    return sum(model.objects.filter(status="pending").count() for model in (GitLabWrite, SalesforceWrite))


def whole_sync_since(since: datetime) -> bool:
    from opportunities.models import SyncRun

    return SyncRun.objects.filter(kind="rules", status="succeeded", started_at__gte=since).exists()


# --- What the end state is, and what went wrong -----------------------------------------------------------


def end_state(gitlab: GitLabStandIn, salesforce: SalesforceStandIn) -> dict[tuple, object]:
    """(where, record, field) → value, for PS Plan's mirror and both stand-ins; the stand-ins' addresses,
    which differ from run to run, are replaced by names."""
    from opportunities.models import Opportunity
    from scoping.models import ScopingIssue

    state: dict[tuple, object] = {}
    fields = ("state", "stage", "segment", "em_status", "close_qtr", "labels", "engagement_manager__name")
    for row in ScopingIssue.objects.values("iid", *fields):
        iid = row.pop("iid")
        row["labels"] = sorted(row["labels"])
        state.update({("PS Plan issue", iid, name): value for name, value in row.items()})
    fields = (
        "em_confidence",
        "em_confidence_rationale",
        "engagement_manager__name",
        "scoping_issue_link",
        "is_won",
    )
    for row in Opportunity.objects.values("name", *fields):
        name = row.pop("name")
        state.update({("PS Plan opportunity", name, key): value for key, value in row.items()})
    for iid in range(1, ISSUES + 1):
        issue = gitlab.issue(iid)
        comments = sorted(note["body"] for note in gitlab.notes(iid) if not note["system"])
        values = {
            "state": issue["state"],
            "labels": sorted(issue["labels"]),
            "comments": comments,
            "assignees": sorted(user["username"] for user in issue["assignees"]),
        }
        state.update({("GitLab issue", iid, key): value for key, value in values.items()})
    state[("GitLab project", "labels", "")] = gitlab.label_names
    for record in salesforce.records("Opportunity"):
        for key in ("StageName", *SALESFORCE_FIELDS.values()):
            state[("Salesforce opportunity", record["Name"], key)] = record[key]
    places = {gitlab.url: "<gitlab>", salesforce.instance_url: "<salesforce>"}
    return {key: _without(places, value) for key, value in state.items()}


def _without(places: dict[str, str], value: object) -> object:
    if isinstance(value, str):
        for address, name in places.items():
            value = value.replace(address, name)
        return value
    if isinstance(value, list):
        return [_without(places, item) for item in value]
    return value


def differences(baseline: dict[tuple, object], state: dict[tuple, object]) -> list[str]:
    found = []
    for key in sorted(baseline.keys() | state.keys(), key=str):
        before, now = baseline.get(key, "nothing"), state.get(key, "nothing")
        if before != now:
            found.append(f"{' '.join(map(str, key))}: {before!r} in the baseline, {now!r} here")
    return found


def gitlab_values(issue: dict[str, Any]) -> dict[str, object]:
    """An issue at the stand-in in the terms of a GitLabWrite's intent."""
    from scoping.labels import parse_labels

    parsed = parse_labels(issue["labels"])
    return {
        "stage": parsed.stage_for_state(issue["state"]).value,
        "segment": parsed.segment.value if parsed.segment else None,
        "em_status": parsed.em_status.value if parsed.em_status else None,
        "close_qtr": parsed.close_qtr or None,
        "state": issue["state"],
        "assignee_ids": sorted(user["id"] for user in issue["assignees"]),
    }


SALESFORCE_FIELDS = {
    "em_confidence": "EM_Confidence__c",
    "em_confidence_rationale": "EM_Confidence_Rationale__c",
    "engagement_manager": "Engagement_Manager__c",
    "scoping_issue_link": "Scoping_Issue_Link__c",
}


def lost_writes(run: Run) -> list[str]:
    """Edits answered 200 without a queue row, and queue rows whose value the stand-in does not show.

    A row's value is judged against the newest row that sets the same field of the same record: a
    later edit supersedes an earlier one, which then counts as delivered when the later one is.
    """
    from opportunities.models import SalesforceWrite
    from scoping.models import GitLabWrite

    lost = []
    rows = sum(model.objects.filter(source="api").count() for model in (GitLabWrite, SalesforceWrite))
    if rows < len(run.accepted):
        lost.append(f"{len(run.accepted) - rows} edits were answered 200 but left no queue row")
    writes = list(GitLabWrite.objects.select_related("issue").order_by("pk"))
    wanted = {(w.issue.iid, key): value for w in writes for key, value in w.intent.items()}
    for write in writes:
        iid = write.issue.iid
        remote = gitlab_values(run.gitlab.issue(iid))
        comments = [note["body"] for note in run.gitlab.notes(iid) if not note["system"]]
        wrong = [key for key in write.intent if remote[key] != _sorted_if_list(wanted[(iid, key)])]
        if write.status != "delivered" or wrong or (write.note and write.note not in comments):
            differs = f"GitLab differs in {wrong or 'its comment'}"
            lost.append(f"GitLab write #{write.pk} to #{iid} ({write.summary}): {write.status}, {differs}")
    writes = list(SalesforceWrite.objects.select_related("opportunity").order_by("pk"))
    wanted = {(w.opportunity.salesforce_id, key): value for w in writes for key, value in w.changes.items()}
    for write in writes:
        opportunity = write.opportunity.salesforce_id
        record = run.salesforce.get_opportunity(opportunity)
        wrong = [
            key
            for key in write.changes
            if _salesforce_value(key, record[SALESFORCE_FIELDS[key]])
            != _salesforce_value(key, wanted[(opportunity, key)])
        ]
        if write.status != "delivered" or wrong:
            differs = f"Salesforce differs in {wrong}" if wrong else write.last_error[:200]
            name = write.opportunity.name
            lost.append(f"Salesforce write #{write.pk} to {name}: {write.status}, {differs}")
    return lost


def _salesforce_value(field_name: str, value: object) -> str:
    """Salesforce stores empty text as null, and a lookup as an 18-character id."""
    text = str(value or "")
    return text[:15] if field_name == "engagement_manager" else text


def _sorted_if_list(value: object) -> object:
    return sorted(value) if isinstance(value, list) else value


def gitlab_puts(run: Run) -> dict[int, list[tuple[tuple[str, ...], tuple[str, ...], str]]]:
    """Issue iid → the label and state changes of each PUT GitLab handled, in order."""
    puts: dict[int, list[tuple[tuple[str, ...], tuple[str, ...], str]]] = defaultdict(list)
    for request in run.gitlab.requests[run.gitlab_clean_from :]:
        match = re.fullmatch(rf"/api/v4/projects/{PROJECT_ID}/issues/(\d+)", request.path)
        if request.method == "PUT" and match:
            body = request.body
            added, removed = _labels(body.get("add_labels")), _labels(body.get("remove_labels"))
            puts[int(match[1])].append((added, removed, str(body.get("state_event") or "")))
    return puts


def _labels(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    return tuple(sorted(str(item).strip() for item in items if str(item).strip()))


def duplicate_writes(run: Run) -> list[str]:
    """Comments posted twice, a label change sent twice to one issue, an edit applied twice in Salesforce."""
    found = []
    for iid in range(1, ISSUES + 1):
        comments = Counter(note["body"] for note in run.gitlab.notes(iid) if not note["system"])
        found += [f"#{iid}: a comment posted {count} times" for count in comments.values() if count > 1]
    for iid, changes in gitlab_puts(run).items():
        sent = Counter(change for change in changes if any(change))
        found += [
            f"#{iid}: the change {change} sent {count} times" for change, count in sent.items() if count > 1
        ]
    applied = Counter(
        (record_id, fields["EM_Confidence_Rationale__c"])
        for record_id, fields in run.salesforce.applied_updates
        if fields.get("EM_Confidence_Rationale__c")
    )
    found += [f"{record}: {text!r} applied {n} times" for (record, text), n in applied.items() if n > 1]
    return found


def out_of_order(run: Run) -> list[str]:
    """Records whose edits reached the stand-in in another order than they were made."""
    from scoping.choices import Stage
    from scoping.labels import em_status_label, segment_label, workflow_label

    label_of = {
        "stage": lambda v: workflow_label(Stage(v)),
        "segment": segment_label,
        "em_status": em_status_label,
    }
    made: dict[tuple[str, object], list[str]] = defaultdict(list)
    for edit in sorted(run.accepted, key=lambda e: e.order):
        if edit.record[0] == "issue":
            made[edit.record] += [label_of[key](value) for key, value in edit.body.items()]
        else:
            made[edit.record].append(edit.body["em_confidence_rationale"])
    arrived: dict[tuple[str, object], list[str]] = defaultdict(list)
    for iid, changes in gitlab_puts(run).items():
        wanted = made.get(("issue", iid), [])
        for added, _, _ in changes:
            arrived[("issue", iid)] += sorted((label for label in added if label in wanted), key=wanted.index)
    for record_id, fields in run.salesforce.applied_updates:
        if fields.get("EM_Confidence_Rationale__c"):
            arrived[("opportunity", record_id)].append(fields["EM_Confidence_Rationale__c"])
    problems = []
    for record, values in arrived.items():
        places = [made[record].index(value) for value in values if value in made[record]]
        if places != sorted(set(places)):
            problems.append(f"{record[0]} {record[1]}: edits arrived as {values}, made as {made[record]}")
    return problems


def overlapping_syncs() -> list[str]:
    """Sync runs (pulls, rules, EM linking) that ran at the same time: the lock allows one at a time."""
    from django.utils import timezone

    from opportunities.models import SyncRun

    runs = SyncRun.objects.filter(kind__in=SYNC_KINDS).exclude(status="skipped").order_by("started_at")
    problems, latest = [], None  # the run that ends last of those started so far
    for sync_run in runs:
        end = sync_run.finished_at or timezone.now()
        if latest is not None and sync_run.started_at < latest[0]:
            earlier = latest[1]
            problems.append(
                f"sync runs overlap: {earlier} by {earlier.owner}, {sync_run} by {sync_run.owner}"
            )
        if latest is None or end > latest[0]:
            latest = (end, sync_run)
    return problems


# --- The drills -------------------------------------------------------------------------------------------


def baseline(run: Run) -> None:
    run.start_stack()
    run.settle("the first sync and the rules' closures")
    run.make_edits(run.edits)
    run.settle("the edits")


def kills(run: Run) -> None:
    issues = f"/api/v4/projects/{PROJECT_ID}/issues"
    pull = run.kill_on(run.gitlab.before_next, "sync-worker", method="GET", path=issues)
    run.start_stack()
    run.wait_event(pull, "the sync worker's GitLab pull")
    query = run.kill_on(run.salesforce.before_next, "sync-worker", kind="query")
    taken_over(run, lambda: run.restart("sync-worker"), kinds=("gitlab_full", "gitlab_incremental"))
    run.wait_event(query, "the sync worker's Salesforce pull")
    taken_over(run, lambda: run.restart("sync-worker"), kinds=("salesforce_full", "salesforce_incremental"))
    run.settle("the syncs after two killed ones")
    killed = [
        run.kill_on(run.gitlab.before_next, "worker", method="PUT"),
        run.kill_on(run.salesforce.before_next, "worker", kind="write"),
    ]
    editing = threading.Thread(target=run.make_edits, args=(run.edits,))
    editing.start()
    for event in killed:
        run.wait_event(event, "a delivery to kill")
        run.restart("worker")
    editing.join(run.timeout)
    run.settle("the edits, delivered by a worker killed twice")


def taken_over(run: Run, restart: Callable[[], None], *, kinds: tuple[str, ...]) -> None:
    """After a sync was killed mid-pull: another must run (not skip) within RECOVERY_LIMIT seconds."""
    from django.utils import timezone

    from opportunities.models import SyncRun

    killed_at, started = timezone.now(), time.monotonic()
    restart()
    later = SyncRun.objects.filter(kind__in=kinds, started_at__gt=killed_at).exclude(status="skipped")
    wait_for("a sync to take over the killed one's lock", later.exists, RECOVERY_LIMIT)
    say(f"{run.name}: a sync took over {time.monotonic() - started:.0f} s after the kill")


def outage(run: Run) -> None:
    first, second = ([edit for edit in run.edits if edit.round == n] for n in (0, 1))
    run.start_stack()
    run.settle("the first sync and the rules' closures")
    say("outage: GitLab answers 502 to everything; Salesforce is up")
    run.gitlab.fail_at_random({502: 1.0})
    run.make_edits(first)
    started = time.monotonic()
    wait_for("Salesforce deliveries during the GitLab outage", salesforce_drained, RECOVERY_LIMIT)
    say(f"outage: Salesforce had every write {time.monotonic() - started:.0f} s after the edits")
    say("outage: Salesforce answers 502 to everything too")
    run.salesforce.fail_at_random(salesforce_faults.BAD_GATEWAY, 1.0)
    run.make_edits(second)
    run.wait("every edit tried during the outage", lambda: untried_writes() == 0)
    run.gitlab_clean_from = run.gitlab.request_count
    run.gitlab.clear_faults()
    run.salesforce.clear_faults()
    recovered = time.monotonic()
    say("outage: GitLab and Salesforce are back")
    wait_for("GitLab's queue to drain after the outage", gitlab_drained, RECOVERY_LIMIT)
    say(f"outage: GitLab had every write {time.monotonic() - recovered:.0f} s after it recovered")
    run.settle("the edits made during the outage")


def salesforce_drained() -> bool:
    from opportunities.models import SalesforceWrite

    return not SalesforceWrite.objects.filter(status="pending").exists()


def gitlab_drained() -> bool:
    from scoping.models import GitLabWrite

    return not GitLabWrite.objects.filter(status="pending").exists()


def untried_writes() -> int:
    from opportunities.models import SalesforceWrite
    from scoping.models import GitLabWrite

    return sum(
        model.objects.filter(source="api", attempts=0).count() for model in (GitLabWrite, SalesforceWrite)
    )


def crowd(run: Run) -> None:
    # Slower systems make each sync and delivery last long enough for the others to run into it.
    run.gitlab.latency = run.salesforce.latency = 0.2
    run.start_web()
    for name in ("worker-a", "worker-b"):
        run.start_worker(name, "celery,sync,gitlab,salesforce", 2)
    run.start_beat("beat-a")
    run.start_beat("beat-b")
    run.start_manual_sync("manual-sync-1")
    created_first = labels_created_first(run)
    run.wait_ready("web", "worker-a", "worker-b", "beat-a", "beat-b")
    run.settle("the first syncs and the rules' closures")
    if not created_first.is_set():
        run.outcome.problems.append("PS Plan created no label: the 409 on label creation was not drilled")
    run.outcome.problems += writes_deferred()
    run.start_manual_sync("manual-sync-2")
    run.make_edits(run.edits)
    run.settle("the edits")
    for name in ("manual-sync-1", "manual-sync-2"):
        code = run.processes.exit_code(name, run.timeout)
        say(f"crowd: {name} exited with {code}: {run.processes.tail(name, 3)!r}")
        if code is None:
            raise DrillTimeout(f"{name} still running after {run.timeout:.0f} s")
        last_line = run.processes.tail(name, 1)
        # Nothing fails here: a sync either runs, and every write it saw is delivered (by it or by a
        # worker), or finds another sync running, which it says.
        if code and "another sync is running" not in last_line:
            run.outcome.problems.append(f"{name} exited with {code}: {last_line}")


def labels_created_first(run: Run) -> threading.Event:
    """Before PS Plan's first label creation, the labels it creates in the baseline appear in GitLab, as
    if another worker or a person had been first: GitLab answers PS Plan's POST with 409."""
    seeded = set(run.gitlab.label_names)
    created = set(run.baseline[("GitLab project", "labels", "")]) - seeded  # type: ignore[arg-type]
    done = threading.Event()

    def create_them_first() -> None:
        for label in created:
            run.gitlab.add_label(label)
        say(f"{run.name}: {sorted(created)} created in GitLab just before PS Plan's POST")
        done.set()

    run.gitlab.before_next(create_them_first, method="POST", path=f"/api/v4/projects/{PROJECT_ID}/labels")
    return done


def writes_deferred() -> list[str]:
    """Writes that needed a second attempt, in a drill where GitLab and Salesforce never fail."""
    from opportunities.models import SalesforceWrite
    from scoping.models import GitLabWrite

    return [
        f"{type(write).__name__} #{write.pk} took {write.attempts} attempts ({write.last_error[:120]!r})"
        for model in (GitLabWrite, SalesforceWrite)
        for write in model.objects.filter(attempts__gt=1)
    ]


class WebhookSender:
    """GitLab's webhook at its worst: every issue change and comment is delivered twice at once under one
    Idempotency-Key (GitLab retrying a slow answer), and each issue event again at the end, stale, under
    a new key (a delivery resent by hand long after)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.updated: dict[int, str] = {
            iid: run.gitlab.issue(iid)["updated_at"] for iid in range(1, ISSUES + 1)
        }
        self.notes: set[int] = set()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []  # event, key, payload
        self.answers: dict[str, list[str]] = defaultdict(list)  # key → PS Plan's answers
        self._stop = threading.Event()

    @contextmanager
    def sending(self) -> Iterator[None]:
        watcher = threading.Thread(target=self._watch, name="webhooks", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            self._stop.set()
            watcher.join(self.run.timeout)

    def resend_stale(self) -> None:
        stale = [(event, payload) for event, _, payload in self.sent if event == "Issue Hook"]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda item: self._post(item[0], f"resent-{secrets.token_hex(8)}", item[1]), stale))
        say(f"{self.run.name}: {len(stale)} stale issue events resent under new keys")

    def _watch(self) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            while not self._stop.wait(0.5):
                for event, payload in self._new_events():
                    key = f"drill-{secrets.token_hex(8)}"
                    self.sent.append((event, key, payload))
                    list(pool.map(self._post, [event] * 2, [key] * 2, [payload] * 2))

    def _new_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        gitlab = self.run.gitlab
        for iid in range(1, ISSUES + 1):
            updated = gitlab.issue(iid)["updated_at"]
            if updated != self.updated[iid]:
                self.updated[iid] = updated
                yield "Issue Hook", gitlab.issue_hook(iid)
            for note in gitlab.notes(iid):
                if not note["system"] and note["id"] not in self.notes:
                    self.notes.add(note["id"])
                    yield "Note Hook", gitlab.note_hook(note)

    def _post(self, event: str, key: str, payload: dict[str, Any]) -> None:
        self.answers[key].append(self.run.client.post_webhook(event, key, payload))

    def judge(self) -> tuple[list[str], list[str]]:
        """(duplicates, problems): a key queued twice; a key never queued, a delivery unapplied or failed."""
        from scoping.models import WebhookDelivery

        duplicates, problems = [], []
        for key, answers in self.answers.items():
            queued = answers.count("queued")
            if queued > 1:
                duplicates.append(f"webhook delivery {key} queued {queued} times: {answers}")
            elif not queued:
                problems.append(f"webhook delivery {key} never queued: {answers}")
        stored = WebhookDelivery.objects.count()
        if stored != len(self.answers):
            problems.append(f"{len(self.answers)} webhook deliveries sent, {stored} stored")
        for delivery in WebhookDelivery.objects.exclude(processed_at__isnull=False, error=""):
            problems.append(f"webhook delivery {delivery.delivery_key} not applied: {delivery.error!r}")
        return duplicates, problems


def webhooks(run: Run) -> None:
    sender = WebhookSender(run)
    run.start_stack()
    with sender.sending():
        run.settle("the first sync and the rules' closures")
        run.make_edits(run.edits)
        run.settle("the edits")
    sender.resend_stale()
    say(f"webhooks: {len(sender.sent)} events sent twice each")
    run.wait("every webhook delivery applied", webhooks_applied)
    duplicates, problems = sender.judge()
    run.outcome.duplicates += duplicates
    run.outcome.problems += problems


def webhooks_applied() -> bool:
    from scoping.models import WebhookDelivery

    return not WebhookDelivery.objects.filter(processed_at__isnull=True, error="").exists()


def redis_outages(run: Run) -> None:
    run.start_stack()
    run.settle("the first sync and the rules' closures")
    queued_across_a_restart(run, run.edits[:60])
    lost_with_its_data(run, run.edits[60:110], during=run.edits[110:])


def queued_across_a_restart(run: Run, edits: list[Edit]) -> None:
    """With the workers stopped the edits' delivery tasks wait in Redis, which restarts cleanly."""
    redis_ = run.services.redis
    run.processes.stop("worker")
    run.processes.stop("sync-worker")
    run.make_edits(edits)
    before = redis_.queued()
    redis_.restart()
    after = redis_.queued()
    say(f"redis: restarted with the workers stopped; tasks queued before {before}, after {after}")
    if after < before:
        run.outcome.problems.append(f"Redis lost queued tasks across a clean restart: {before} → {after}")
    run.start_worker()
    run.start_sync_worker()
    run.wait_ready("worker", "sync-worker")
    run.settle("the tasks queued across the restart")


def lost_with_its_data(run: Run, edits: list[Edit], *, during: list[Edit]) -> None:
    """With the delivery worker stopped the edits' tasks wait in Redis, which dies and comes back empty:
    only the rows in the database are left, for the beat's sweeps. The sync worker and beat live on."""
    redis_ = run.services.redis
    run.client.get_page("/issues/")  # signed in while Redis is up, as a person already at work would be
    run.processes.stop("worker")
    with run.restarting("sync-worker", "beat"):
        run.make_edits(edits)
        say(f"redis: {redis_.queued()} tasks queued; killing Redis and deleting its data")
        redis_.kill_and_lose_data()
        refused = poll_and_edit(run, during)
        redis_.start()
        waiting = pending_writes()
        say(f"redis: back, empty; {waiting} writes wait in the database; {len(refused)} edits to redo")
        run.start_worker()
        run.wait_ready("worker")
        run.retry_edits(refused)
        run.settle("the work queued when Redis lost its data")


PAGES = ("/issues/", "/opportunities/", "/boards/", "/sync/", "/reports/win-rate/", "/healthz")
API_READS = (
    "/api/v1/scoping-issues/",
    "/api/v1/opportunities/",
    "/api/v1/scoping-issues/40/",
    "/api/v1/reports/win-rate/",
)


# An edit is answered this fast even while the broker is down (its row waits for the sweep).
EDIT_WITHOUT_BROKER_LIMIT = 2.0


def poll_and_edit(run: Run, edits: list[Edit]) -> list[Edit]:
    """While Redis is away: every page and API read twice, and the edits; returns the refused edits."""
    for _ in range(2):
        for path in PAGES:
            run.client.get_page(path)
        for path in API_READS:
            run.client.get_api(path)
    run.client.slowest_edit = 0.0
    refused = run.make_edits(edits)
    slowest = run.client.slowest_edit
    say(f"redis: the slowest edit while Redis was down took {slowest:.2f} s")
    if slowest > EDIT_WITHOUT_BROKER_LIMIT:
        run.outcome.problems.append(f"an edit took {slowest:.1f} s to answer while the broker was down")
    return refused


# --- Running it all -------------------------------------------------------------------------------------


class Services:
    """What every run shares: PostgreSQL (a migrated template database), Redis and the API user."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres = PostgreSQL(folder)
        self.redis = Redis(folder)
        self.secret_key = secrets.token_urlsafe(60)
        self.password = secrets.token_urlsafe(18)
        self.token = ""
        # Midnight UTC: every run's data is dated from it, so rules' comments read alike in every run.
        self.anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        self.postgres.create(TEMPLATE)
        say("migrating the template database, collecting static files, creating the API user")
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        self.token = create_api_user(self)
        os.environ.update({**self.base_environment(), "DJANGO_LOG_LEVEL": "WARNING"})
        import django

        django.setup()

    def stop(self) -> None:
        from django.db import connections

        connections.close_all()
        self.redis.stop()
        self.postgres.stop()

    def fresh(self) -> None:
        from django.db import connections

        connections.close_all()
        self.postgres.recreate(DATABASE, template=TEMPLATE)
        self.redis.flush()

    def manage(self, *arguments: str, **environment: str) -> str:
        """`manage.py` on the template database; returns what it printed."""
        env = {**self.base_environment(), "DATABASE_URL": self.postgres.url(TEMPLATE), **environment}
        done = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {arguments[0]} failed:\n{done.stdout}{done.stderr[-3000:]}")
        return done.stdout

    def base_environment(self) -> dict[str, str]:
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GITLAB_", "SALESFORCE_", "CELERY_", "DJANGO_", "PSPLAN_"))
            and key not in ("DATABASE_URL", "CACHE_URL", "REQUESTS_CA_BUNDLE")
        }
        return {
            **inherited,
            **DRILL_ENVIRONMENT,
            "DJANGO_SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.postgres.url(DATABASE),
            "CELERY_BROKER_URL": self.redis.url(0),
            "CACHE_URL": self.redis.url(1),
        }

    def environment(self, gitlab: GitLabStandIn, salesforce: SalesforceStandIn) -> dict[str, str]:
        return {
            **self.base_environment(),
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": TOKEN,
            "GITLAB_PROJECT": PROJECT,
            "GITLAB_SCOPING_LABEL": SCOPING,
            "SALESFORCE_INSTANCE_URL": salesforce.instance_url,
            "SALESFORCE_ACCESS_TOKEN": salesforce.access_token,
            "REQUESTS_CA_BUNDLE": salesforce.ca_bundle_path,
        }


def create_api_user(services: Services) -> str:
    """A staff user and its API token, made with the commands an operator uses (see the README)."""
    services.manage(
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_USERNAME=API_USER,
        DJANGO_SUPERUSER_PASSWORD=services.password,
        DJANGO_SUPERUSER_EMAIL="drill@example.com",
    )
    printed = services.manage("drf_create_token", API_USER)
    found = re.search(r"Generated token (\S+) for user", printed)
    if found is None:
        raise RuntimeError(f"drf_create_token printed no token: {printed!r}")
    return found[1]


DRILLS: dict[str, Callable[[Run], None]] = {
    "kills": kills,
    "outage": outage,
    "crowd": crowd,
    "webhooks": webhooks,
    "redis": redis_outages,
}


def run_one(name: str, drill: Callable[[Run], None], services: Services, args, baseline_state) -> Outcome:
    say(f"{name}: starting")
    run = Run(name, services, args)
    run.baseline = baseline_state or {}
    try:
        try:
            drill(run)
        except (DrillTimeout, RuntimeError) as exc:
            run.outcome.problems.append(f"{name} stopped: {exc}")
            say(f"{name}: {exc}")
        outcome = run.judge(baseline_state)
    finally:
        run.close()
    findings = {
        "lost": outcome.lost,
        "duplicate": outcome.duplicates,
        "difference": outcome.differences,
        "problem": outcome.problems,
        "note": outcome.notes,
    }
    counts = ", ".join(f"{len(items)} {kind}" for kind, items in findings.items())
    say(f"{name}: {counts}; answers by status {dict(sorted(run.client.answers.items()))}")
    for kind, items in findings.items():
        for item in items[:10]:
            print(f"    {kind}: {item}", flush=True)
        if len(items) > 10:
            print(f"    … and {len(items) - 10} more {kind} lines", flush=True)
    return outcome


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl+C, so everything started is stopped."""

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


@contextmanager
def services_running(keep_logs: bool) -> Iterator[Services]:
    folder = Path(tempfile.mkdtemp(prefix="psplan-drills-"))
    services = Services(folder)
    try:
        services.start()
        yield services
    finally:
        services.stop()
        if keep_logs:
            say(f"logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=150, help="seconds any one wait may last")
    parser.add_argument(
        "--only", default=",".join(DRILLS), help="comma-separated drills to run after the baseline"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs in the temporary folder"
    )
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    if unknown := set(chosen) - set(DRILLS):
        parser.error(f"no such drill: {', '.join(sorted(unknown))} (there are {', '.join(DRILLS)})")
    stop_on_signals()
    with services_running(args.keep_logs) as services:
        say(f"PostgreSQL on port {services.postgres.port}, Redis on port {services.redis.port}")
        reference = run_one("baseline", baseline, services, args, None)
        outcomes = [reference]
        for name in chosen:
            outcomes.append(run_one(name, DRILLS[name], services, args, reference.state))
    figures = {
        "drill_lost_writes": sum(len(o.lost) for o in outcomes),
        "drill_duplicate_writes": sum(len(o.duplicates) for o in outcomes),
        "drill_state_differences": sum(len(o.differences) for o in outcomes),
    }
    problems = sum(len(o.problems) for o in outcomes)
    print(f"other problems (answers 5xx, order, overlapping syncs, timeouts): {problems}")
    for name, value in figures.items():
        print(f"{name}: {value}")
    return 1 if problems or any(figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
