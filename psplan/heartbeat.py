"""A process's pulse: leases and running records are renewed from a background thread while work runs.

A sync waits on GitLab or Salesforce for many seconds at a time, so the work itself cannot promise to
renew its lock often. A daemon thread renews everything this process registered; when the process is
killed the renewals stop, and another process takes over within one time to live.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

_callbacks: dict[str, Callable[[], None]] = {}
_lock = threading.Lock()
_thread: threading.Thread | None = None


def interval() -> float:
    """Seconds between renewals: a lease (PSPLAN_SYNC_LOCK_TTL) survives three missed beats."""
    return settings.PSPLAN_SYNC_LOCK_TTL / 4


_process: tuple[int, str] | None = None


def process_name() -> str:
    """This process, readable on the sync page: host, pid and a nonce (pids are reused)."""
    global _process
    if _process is None or _process[0] != os.getpid():  # a forked worker is a process of its own
        _process = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _process[1]


def owner_name() -> str:
    """Who holds a lease: this process and a nonce of the lease's own."""
    return f"{process_name()}:{uuid.uuid4().hex[:8]}"


def process_of(owner: str) -> str:
    """The process part of a lease's owner name."""
    return owner.rsplit(":", 1)[0]


@contextmanager
def beating(renew: Callable[[], None]) -> Iterator[None]:
    """Call `renew` every `interval()` seconds from the heartbeat thread for as long as the block runs."""
    key = uuid.uuid4().hex
    with _lock:
        _callbacks[key] = renew
        _start_thread()
    try:
        yield
    finally:
        with _lock:
            _callbacks.pop(key, None)


def _start_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_run, name="psplan-heartbeat", daemon=True)
        _thread.start()


def _run() -> None:
    last_beat = time.monotonic()
    while True:
        time.sleep(min(1.0, interval()))
        if time.monotonic() - last_beat < interval():
            continue
        last_beat = time.monotonic()
        with _lock:
            renewals = list(_callbacks.values())
        if not renewals:
            continue
        close_old_connections()
        for renew in renewals:
            try:
                renew()
            except Exception:  # a missed beat is survivable; a dead heartbeat thread is not
                logger.exception("Heartbeat renewal failed")
        connections.close_all()
