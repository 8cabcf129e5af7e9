"""Load test: 50 signed-in people on gunicorn and PostgreSQL, on the full mix and then on the light one.

    uv run --group load python bench/load.py [--users 50] [--seconds 60] [--max-requests 20000]

Starts a throwaway PostgreSQL on 127.0.0.1 (as bin/test does) and fills it with bench/load_data.py: 10,000
scoping issues and 10,000 opportunities, 60 EMs with territories. Serves PS Plan with gunicorn (2 sync
workers, production settings with DEBUG off, plain HTTP) on 127.0.0.1, and drives it with locust used as a
library: 40 EMs and 10 leaders each sign in once on /login/, then ask for page after page with no pause
(a closed loop, so throughput is what the server manages).

The server runs as production does, on plain HTTP: a fresh random DJANGO_SECRET_KEY of 79 characters (the
production check refuses short or plain keys), DJANGO_HTTPS=0 (else every request is redirected to HTTPS),
django-axes on, the JSON request log at INFO. Everyone signs in through the real /login/ form with the right
password, so axes is left as production configures it: it counts only failed sign-ins (and resets on
success), so 50 sign-ins from 127.0.0.1 lock nothing. A failed sign-in stops the run, and its database is
thrown away, so no lockout outlives it. API requests send a django-rest-knox token (`Authorization: Token
…`) made by psplan.tokens.create_token, and no cookie.

1. warm-up, 10 s, not counted;
2. the full mix for --seconds: boards (one EM's and all EMs'), triage, My work, the issue list, issue
   pages, opportunities, the three reports, and API lists (token auth, no session);
3. the same people on the light mix for --seconds: the full mix without boards and triage.

A phase also ends after --max-requests requests, and every request in flight finishes before the next
phase begins, so each phase's throughput is its own requests over its own time. Prints, per phase and
endpoint: throughput, p50 and p99 as the client saw them, errors (anything but 200: every endpoint answers
a signed-in person 200, so even a redirect means something went wrong, e.g. a sign-out), response size,
and from the server's request log its own median time and share of the workers' time; then the CPU each
process spent, and the server's log lines that are neither requests nor routine (tracebacks, warnings). Ends with `load_requests`, `load_errors`, `load_p50_ms`, `load_p99_ms`, `load_p99_over_p50` and
`load_full_vs_light_throughput_ratio` (both phases counted together for the first five).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from urllib.parse import urlencode, urlsplit

try:  # locust monkey-patches the standard library for gevent as it loads
    import gevent
    import psutil
    from gevent.event import Event
    from locust import FastHttpUser, constant, task
    from locust.contrib.fasthttp import FastHttpSession
    from locust.env import Environment
except ModuleNotFoundError:
    sys.exit("locust is in the `load` dependency group: uv run --group load python bench/load.py")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load_data import LEADERS, SIGNED_IN_EMS  # noqa: E402
from bench.throwaway_postgres import throwaway_postgres  # noqa: E402

PEOPLE = SIGNED_IN_EMS + LEADERS  # everyone bench/load_data.py lets sign in
WORKERS = 2  # as production's gunicorn
WARM_UP_SECONDS = 10
REQUEST_TIMEOUT = 60
SIGN_IN_TIMEOUT = 180
SETUP_TIMEOUT = 900


# --- What the people ask for ---------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    username: str
    token: str
    engagement_manager: str | None  # their own GitLab username when they are an EM
    open_iids: list[int]  # their open issues
    colleagues: list[str]  # every EM's GitLab username
    records: int  # issues in the database, iids 1…records

    @classmethod
    def from_plan(cls, entry: dict, plan: dict) -> Person:
        return cls(
            entry["username"],
            entry["token"],
            entry["engagement_manager"],
            entry["open_iids"],
            plan["engagement_managers"],
            plan["records"],
        )

    def whose(self, rng: Random) -> str:
        """An EM looks at their own work; a leader at some EM's."""
        return self.engagement_manager or rng.choice(self.colleagues)

    def some_issue(self, rng: Random) -> int:
        return rng.choice(self.open_iids) if self.open_iids else rng.randint(1, self.records)


@dataclass(frozen=True)
class Endpoint:
    name: str
    weight: int
    route: str  # matches the path (and query) of its lines in the server's request log
    path: Callable[[Person, Random], str]
    api: bool = False
    heavy: bool = False  # boards and triage: not in the light mix

    def serves(self, target: str) -> bool:
        return re.match(self.route, target) is not None


def _own(base: str) -> Callable[[Person, Random], str]:
    """The EM's own page; a leader names an EM."""
    return lambda p, r: base if p.engagement_manager else f"{base}?engagement_manager={p.whose(r)}"


def _one_of(*paths: Callable[[Person, Random], str]) -> Callable[[Person, Random], str]:
    return lambda p, r: r.choice(paths)(p, r)


def _fixed(path: str) -> Callable[[Person, Random], str]:
    return lambda p, r: path


# Weights: most clicks are My work, issue pages, boards and lists; reports and the API come less often.
# The all-EMs board comes first so that its log lines are not taken for the one-EM board.
ENDPOINTS = [
    Endpoint("board, all EMs", 4, r"/boards/\?.*engagement_manager=all", _fixed("/boards/?engagement_manager=all"), heavy=True),
    Endpoint("board, one EM", 8, r"/boards/", _own("/boards/"), heavy=True),
    Endpoint("triage", 5, r"/triage/", _fixed("/triage/"), heavy=True),
    Endpoint("my work", 10, r"/my-work/", _own("/my-work/")),
    Endpoint("issue list", 8, r"/issues/(\?|$)", _one_of(
        _fixed("/issues/"),
        lambda p, r: f"/issues/?engagement_manager={p.whose(r)}&state=opened",
        lambda p, r: f"/issues/?page={r.randint(2, 40)}",
    )),
    Endpoint("issue page", 14, r"/issues/\d+/$", lambda p, r: f"/issues/{p.some_issue(r)}/"),
    Endpoint("opportunities", 8, r"/opportunities/(\?|$)", _one_of(
        _fixed("/opportunities/"), lambda p, r: f"/opportunities/?engagement_manager={p.whose(r)}"
    )),
    Endpoint("report: win rate", 3, r"/reports/win-rate/", _one_of(
        _fixed("/reports/win-rate/"), _fixed("/reports/win-rate/?group_by=engagement_manager")
    )),
    Endpoint("report: forecast", 3, r"/reports/forecast/", _fixed("/reports/forecast/")),
    Endpoint("report: data quality", 3, r"/reports/data-quality/", _fixed("/reports/data-quality/")),
    Endpoint("API: scoping issues", 4, r"/api/v1/scoping-issues/", _one_of(
        _fixed("/api/v1/scoping-issues/"),
        _fixed("/api/v1/scoping-issues/?state=opened"),
        lambda p, r: f"/api/v1/scoping-issues/?engagement_manager={p.whose(r)}",
    ), api=True),
    Endpoint("API: opportunities", 4, r"/api/v1/opportunities/", _one_of(
        _fixed("/api/v1/opportunities/"), lambda p, r: f"/api/v1/opportunities/?engagement_manager={p.whose(r)}"
    ), api=True),
    Endpoint("API: engagement managers", 2, r"/api/v1/engagement-managers/", _fixed("/api/v1/engagement-managers/"), api=True),
]  # fmt: skip


# --- Phases: which mix is on, and a stop between phases ------------------------------------------


@dataclass
class Phase:
    name: str
    endpoints: list[Endpoint]
    seconds: float
    max_requests: int
    started: int = 0
    in_flight: int = 0
    began: float = 0.0
    ended: float = 0.0

    def pick(self, rng: Random) -> Endpoint:
        return rng.choices(self.endpoints, weights=[e.weight for e in self.endpoints])[0]

    @property
    def elapsed(self) -> float:
        return self.ended - self.began


@dataclass
class Conductor:
    """The phase now running; people wait while there is none."""

    current: Phase | None = None
    running: Event = field(default_factory=Event)
    signed_in: int = 0
    sign_in_failures: list[str] = field(default_factory=list)

    def run(self, phase: Phase) -> None:
        """Open the phase for its time (or request budget), then let every request in flight finish."""
        phase.began = time.perf_counter()
        self.current = phase
        self.running.set()
        deadline = phase.began + phase.seconds
        while time.perf_counter() < deadline and phase.started < phase.max_requests:
            gevent.sleep(0.05)
        self.running.clear()
        self.current = None
        while phase.in_flight and time.perf_counter() < deadline + REQUEST_TIMEOUT + 5:
            gevent.sleep(0.01)
        phase.ended = time.perf_counter()


def visitor_class(host: str, people: Iterator[Person], conductor: Conductor, password: str) -> type:
    """A locust user that signs in as the next person, then asks for whatever the current phase mixes."""

    class Visitor(FastHttpUser):
        wait_time = constant(0)
        network_timeout = REQUEST_TIMEOUT
        connection_timeout = REQUEST_TIMEOUT

        def on_start(self) -> None:
            self.person = next(people)
            self.rng = Random(self.person.username)
            # API clients send their token and no session cookie, so they get a session of their own.
            self.api = FastHttpSession(
                base_url=host,
                request_event=self.environment.events.request,
                user=self,
                network_timeout=REQUEST_TIMEOUT,
                connection_timeout=REQUEST_TIMEOUT,
            )
            self.sign_in()

        def sign_in(self) -> None:
            form = self.client.get("/login/", name="sign-in form", context={"phase": "sign-in"})
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text or "")
            body = {"username": self.person.username, "password": password}
            with self.client.post(
                "/login/",
                data=urlencode({**body, "csrfmiddlewaretoken": csrf.group(1) if csrf else ""}),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                name="sign-in",
                allow_redirects=False,
                catch_response=True,
                context={"phase": "sign-in"},
            ) as answer:
                if answer.status_code == 302:
                    conductor.signed_in += 1
                    return
                answer.failure(f"sign-in answered {answer.status_code}")
                conductor.sign_in_failures.append(f"{self.person.username}: {answer.status_code}")

        @task
        def visit(self) -> None:
            phase = conductor.current
            if phase is None or phase.started >= phase.max_requests:
                conductor.running.wait(timeout=1)
                return
            endpoint = phase.pick(self.rng)
            phase.started += 1
            phase.in_flight += 1
            try:
                self.fetch(endpoint, phase)
            finally:
                phase.in_flight -= 1

        def fetch(self, endpoint: Endpoint, phase: Phase) -> None:
            client, headers = self.client, {}
            if endpoint.api:
                client, headers = self.api, {"Authorization": f"Token {self.person.token}"}
            with client.get(
                endpoint.path(self.person, self.rng),
                name=endpoint.name,
                headers={"Accept": "application/json", **headers} if endpoint.api else headers,
                allow_redirects=False,
                catch_response=True,
                context={"phase": phase.name},
            ) as answer:
                if answer.status_code != 200:
                    answer.failure(f"{answer.status_code} for {answer.request.url}")

    return Visitor


# --- Figures --------------------------------------------------------------------------------------


@dataclass
class Sample:
    phase: str
    endpoint: str
    milliseconds: float
    size: int
    error: str | None


def percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


@dataclass
class ServerLog:
    """Gunicorn's stderr: one JSON line per request (psplan.requests) and any traceback."""

    path: Path
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def size(self) -> int:
        return self.path.stat().st_size

    def requests(self, phase: str) -> list[dict]:
        start, end = self.marks[phase]
        with self.path.open("rb") as log:
            log.seek(start)
            lines = log.read(end - start).decode(errors="replace").splitlines()
        return [entry for line in lines if (entry := _request_line(line))]

    def unusual_lines(self) -> list[str]:
        """Lines that are neither a request nor routine: tracebacks, warnings, errors."""
        lines = self.path.read_text(errors="replace").splitlines()
        return [line for line in lines if not _request_line(line) and not ROUTINE.match(line)]


# Gunicorn's start and stop, and django-axes' note of each successful sign-in and its clean-up.
ROUTINE = re.compile(r"\[[^]]+\] \[\d+\] \[INFO\] |AXES: (Successful login|Cleaned up|Reset|Deleted) ")


def _request_line(line: str) -> dict | None:
    if not line.startswith('{"event": "request"'):
        return None
    entry = json.loads(line)
    query = urlencode(entry["query"])
    entry["target"] = entry["path"] + (f"?{query}" if query else "")
    return entry


def server_times(log: ServerLog, phase: Phase) -> tuple[dict[str, list[float]], float]:
    """Per endpoint, the server's own milliseconds for each request; and the workers' busy share."""
    times: dict[str, list[float]] = defaultdict(list)
    for entry in log.requests(phase.name):
        endpoint = next((e for e in phase.endpoints if e.serves(entry["target"])), None)
        if endpoint:
            times[endpoint.name].append(entry["duration_ms"])
    busy = sum(sum(values) for values in times.values()) / 1000 / (WORKERS * phase.elapsed)
    return times, busy


COLUMNS = "{:<26}{:>9}{:>8}{:>9}{:>9}{:>8}{:>8}{:>15}{:>15}"
HEADER = (
    "endpoint",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "KB",
    "server p50 ms",
    "server time %",
)


def print_table(phase: Phase, mine: list[Sample], server: dict[str, list[float]]) -> None:
    """Per endpoint: as the client saw it, then the server's own time from its request log."""
    all_server_time = sum(sum(values) for values in server.values()) or 1.0
    print(COLUMNS.format(*HEADER))
    for endpoint in phase.endpoints:
        rows = [s for s in mine if s.endpoint == endpoint.name]
        times, own = [s.milliseconds for s in rows], server.get(endpoint.name, [])
        print(
            COLUMNS.format(
                endpoint.name,
                len(rows),
                f"{len(rows) / phase.elapsed:.1f}",
                f"{percentile(times, 0.5):.0f}",
                f"{percentile(times, 0.99):.0f}",
                sum(1 for s in rows if s.error),
                f"{statistics.mean([s.size for s in rows] or [0]) / 1024:.0f}",
                f"{percentile(own, 0.5):.0f}",
                f"{100 * sum(own) / all_server_time:.1f}",
            )
        )


def print_phase(phase: Phase, samples: list[Sample], log: ServerLog) -> None:
    mine = [s for s in samples if s.phase == phase.name]
    server, busy = server_times(log, phase)
    print(f"\n{phase.name} mix: {len(mine)} requests in {phase.elapsed:.1f} s")
    print_table(phase, mine, server)
    times = [s.milliseconds for s in mine]
    print(f"load_{phase.name}_requests_per_second: {len(mine) / phase.elapsed:.1f}")
    print(f"load_{phase.name}_p50_ms: {percentile(times, 0.5):.0f}")
    print(f"load_{phase.name}_p99_ms: {percentile(times, 0.99):.0f}")
    print(f"load_{phase.name}_errors: {sum(1 for s in mine if s.error)}")
    print(f"load_{phase.name}_gunicorn_workers_busy_percent: {100 * busy:.0f}")


# --- CPU: who spent the machine's two cores ------------------------------------------------------


def _cpu_seconds(process: psutil.Process, *, with_children: bool) -> float:
    """The process's CPU time, its live children's, and (reaped) children's it has waited for."""
    try:
        own = process.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        if with_children:
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += sum(child.cpu_times()[:2])
        return total
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class CpuMeter:
    processes: dict[str, psutil.Process]

    def read(self) -> dict[str, float]:
        readings = {
            name: _cpu_seconds(process, with_children=name != "load generator")
            for name, process in self.processes.items()
        }
        machine = psutil.cpu_times()
        readings["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return readings


def print_cpu(phase: Phase, requests: int, before: dict[str, float], after: dict[str, float]) -> None:
    """Each process's share of the machine, and its CPU per request: the machine is shared, so the
    milliseconds a request costs say more about the app than the requests per second do."""
    spent = {name: after[name] - before[name] for name in before}
    machine = spent.pop("machine")
    spent["other processes"] = machine - sum(spent.values())
    capacity = (psutil.cpu_count() or 1) * phase.elapsed
    print(f"load_{phase.name}_machine_busy_percent: {100 * machine / capacity:.0f}")
    for name, seconds in spent.items():
        name = name.replace(" ", "_")
        print(f"load_{phase.name}_cpu_{name}_percent_of_machine: {100 * seconds / capacity:.0f}")
        if name != "other_processes":
            print(f"load_{phase.name}_cpu_{name}_ms_per_request: {1000 * seconds / max(requests, 1):.1f}")


# --- Setting up: database, data, server -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(database_url: str, folder: Path) -> dict[str, str]:
    """Production settings on loopback: no integration, broker or shared cache from the caller's shell."""
    outside = ("DJANGO_", "PSPLAN_", "GITLAB_", "SALESFORCE_", "OIDC_", "CELERY_", "CACHE_URL", "EMAIL_URL")
    env = {key: value for key, value in os.environ.items() if not key.startswith(outside)}
    return {
        **env,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "DJANGO_SECRET_KEY": "load-test-only-" + secrets.token_urlsafe(48),
        "DJANGO_DEBUG": "0",
        # Plain HTTP on loopback: production's redirect to HTTPS would answer every request with 301.
        "DJANGO_HTTPS": "0",
        # INFO, as in production: the request log is also where the server's own times come from.
        "DJANGO_LOG_LEVEL": "INFO",
        "PSPLAN_BENCH_STATIC_ROOT": str(folder / "static"),
        "PYTHONPATH": str(ROOT),
    }


def fill(env: dict[str, str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.load_data"],
        cwd=ROOT,
        env={**env, "DJANGO_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
    )
    if done.returncode:
        sys.exit(f"bench/load_data.py failed:\n{done.stderr[-4000:]}")
    print(f"data: {time.perf_counter() - started:.0f} s to create, migrate and fill the database")
    return json.loads(done.stdout)


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "psplan.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(WORKERS)],
            cwd=ROOT, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                sys.exit(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            if time.monotonic() > deadline:
                sys.exit("gunicorn did not start listening within 60 s")
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _postmaster(port: int) -> psutil.Process:
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and f"-p {port}" in " ".join(process.info["cmdline"] or []):
            return process
    sys.exit(f"no PostgreSQL server on port {port}")


# --- The run ------------------------------------------------------------------------------------------


def sign_everyone_in(environment: Environment, conductor: Conductor, users: int) -> None:
    environment.runner.start(users, spawn_rate=users)
    deadline = time.monotonic() + SIGN_IN_TIMEOUT
    while conductor.signed_in + len(conductor.sign_in_failures) < users:
        if time.monotonic() > deadline:
            sys.exit(f"only {conductor.signed_in} of {users} people signed in within {SIGN_IN_TIMEOUT} s")
        gevent.sleep(0.1)
    if conductor.sign_in_failures:
        sys.exit(f"sign-in failed: {', '.join(conductor.sign_in_failures[:5])}")


def start_locust(
    host: str, plan: dict, users: int, conductor: Conductor, samples: list[Sample]
) -> Environment:
    """A local locust runner whose users sign in as the plan's first `users` people, recording every request."""
    people = [Person.from_plan(entry, plan) for entry in plan["people"][:users]]
    environment = Environment(
        user_classes=[visitor_class(host, iter(people), conductor, plan["password"])], host=host
    )

    def record(name, response_time, response_length, exception, context, **_) -> None:
        error = str(exception) if exception else None
        samples.append(Sample(context.get("phase", ""), name, response_time, response_length, error))

    environment.events.request.add_listener(record)
    environment.create_local_runner()
    return environment


def load_test(args: argparse.Namespace, plan: dict, port: int, log: ServerLog, meter: CpuMeter) -> None:
    conductor, samples = Conductor(), []
    environment = start_locust(f"http://127.0.0.1:{port}", plan, args.users, conductor, samples)
    sign_everyone_in(environment, conductor, args.users)
    phases = [
        Phase("warm-up", ENDPOINTS, WARM_UP_SECONDS, args.max_requests),
        Phase("full", ENDPOINTS, args.seconds, args.max_requests),
        Phase("light", [e for e in ENDPOINTS if not e.heavy], args.seconds, args.max_requests),
    ]
    for phase in phases:
        start, before = log.size(), meter.read()
        conductor.run(phase)
        log.marks[phase.name] = (start, log.size())
        if phase.name != "warm-up":
            print_phase(phase, samples, log)
            print_cpu(phase, phase.started, before, meter.read())
    environment.runner.quit()
    summarise(phases[1], phases[2], samples, log)


def summarise(full: Phase, light: Phase, samples: list[Sample], log: ServerLog) -> None:
    counted = [s for s in samples if s.phase in (full.name, light.name)]
    errors = [s for s in counted if s.error]
    if errors:
        print("\nerrors, e.g.:", *sorted({s.error for s in errors})[:5], sep="\n  ")
    unusual = log.unusual_lines()
    print(f"\nserver log: {len(unusual)} lines besides requests, sign-ins and gunicorn's own")
    for line in unusual[:40]:
        print(f"  {line}")
    times = [s.milliseconds for s in counted]
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    full_rate = sum(1 for s in counted if s.phase == full.name) / full.elapsed
    light_rate = sum(1 for s in counted if s.phase == light.name) / light.elapsed
    print()
    print(f"load_requests: {len(counted)}")
    print(f"load_errors: {len(errors)}")
    print(f"load_p50_ms: {p50:.0f}")
    print(f"load_p99_ms: {p99:.0f}")
    print(f"load_p99_over_p50: {p99 / p50:.2f}")
    print(f"load_full_vs_light_throughput_ratio: {full_rate / light_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50, help="people signed in at once (at most 50)")
    parser.add_argument("--seconds", type=float, default=60, help="length of each measured phase")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests at most per phase")
    args = parser.parse_args()
    if not 1 <= args.users <= PEOPLE:
        parser.error(f"--users must be between 1 and {PEOPLE}: bench/load_data.py makes {PEOPLE} people")
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(throwaway_postgres())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="psplan-bench-load-")))
        env = _environment(database_url, folder)
        plan = fill(env)
        port, log = _free_port(), ServerLog(folder / "gunicorn.log")
        server = stack.enter_context(gunicorn(env, port, log.path))
        meter = CpuMeter(
            {
                "gunicorn": psutil.Process(server.pid),
                "postgres": _postmaster(urlsplit(database_url).port),
                "load generator": psutil.Process(),
            }
        )
        print(
            f"gunicorn: {WORKERS} sync workers on 127.0.0.1:{port}; {args.users} people; {args.seconds:.0f} s a phase"
        )
        load_test(args, plan, port, log, meter)


if __name__ == "__main__":
    main()
