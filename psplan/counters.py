"""Fixed-window counters in the cache, which keep counting in the process while a shared cache is down.

API throttles count here. With CACHE_URL on Redis the counts hold across server processes; when Redis
cannot be reached, each process counts on its own until it answers again, so no request fails for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import BaseCache, cache
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger(__name__)

_in_process = LocMemCache("psplan-counters", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
_WARN_EVERY_SECONDS = 60
_last_warning = 0.0


@dataclass(frozen=True)
class Window:
    """One counter's current window: how many events so far, and seconds until it starts again."""

    count: int
    retry_after: float


def hit(name: str, *, seconds: int) -> Window:
    """Count one more event for `name` in the current window of `seconds`."""
    key, retry_after = _window_key(name, seconds)
    try:
        count = _increment(cache, key, seconds)
    except Exception as exc:  # any cache backend's connection error: count in this process instead
        _warn(exc)
        count = _increment(_in_process, key, seconds)
    return Window(count, retry_after)


def peek(name: str, *, seconds: int) -> Window:
    """The current window of `name` without counting anything."""
    key, retry_after = _window_key(name, seconds)
    try:
        count = cache.get(key, 0)
    except Exception as exc:
        _warn(exc)
        count = _in_process.get(key, 0)
    return Window(count, retry_after)


def clear_all() -> None:
    """Forget every count, in the shared cache and in this process (between tests)."""
    cache.clear()
    _in_process.clear()


def _window_key(name: str, seconds: int) -> tuple[str, float]:
    now = time.time()
    return f"counter:{name}:{int(now // seconds)}", seconds - now % seconds


def _increment(store: BaseCache, key: str, seconds: int) -> int:
    store.add(key, 0, seconds)
    try:
        return store.incr(key)
    except ValueError:  # the window's key expired between add and incr
        store.set(key, 1, seconds)
        return 1


def _warn(exc: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > _WARN_EVERY_SECONDS:
        _last_warning = time.monotonic()
        logger.warning(
            "The shared cache is unreachable (%s); throttles count per process", type(exc).__name__
        )
