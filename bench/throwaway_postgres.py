"""A PostgreSQL cluster for one benchmark run: on 127.0.0.1, in a temporary folder, gone afterwards.

Started the way bin/test starts its own (initdb with trust auth, fsync off, a free port, the socket in
its folder). As root, PostgreSQL's tools run as the `postgres` user, since initdb refuses root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator


def _binaries() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    if not found:
        raise SystemExit("PostgreSQL is not installed (bin/test installs it), or set DATABASE_URL")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private cluster and yield a DATABASE_URL for it; stop it and delete it on the way out."""
    binaries = _binaries()
    folder = tempfile.mkdtemp(prefix="psplan-bench-pg-")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    data, port = os.path.join(folder, "data"), _free_port()
    settings = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off"

    def run(*command: str) -> None:
        subprocess.run([*as_postgres, *command], check=True, stdout=subprocess.DEVNULL)

    try:
        run(f"{binaries}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(
            f"{binaries}/pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "start", "-o", settings
        )
        yield f"postgres://postgres@127.0.0.1:{port}/psplan"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
