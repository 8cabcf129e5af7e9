"""Settings for bench/drills.py: production settings, with a beat fast enough for drills that last minutes.

The periodic sync and the delivery sweeps run every DRILL_SYNC_EVERY_SECONDS and
DRILL_SWEEP_EVERY_SECONDS instead of every few minutes; nothing else differs from psplan.settings.
"""

from __future__ import annotations

from datetime import timedelta

from psplan.settings import *  # noqa: F403
from psplan.settings import CELERY_BEAT_SCHEDULE, _env_int

DRILL_SYNC_EVERY_SECONDS = _env_int("DRILL_SYNC_EVERY_SECONDS", 6, low=1, high=3600)
DRILL_SWEEP_EVERY_SECONDS = _env_int("DRILL_SWEEP_EVERY_SECONDS", 3, low=1, high=3600)


def _every(name: str, seconds: int) -> dict[str, object]:
    entry = CELERY_BEAT_SCHEDULE[name]
    return {**entry, "schedule": timedelta(seconds=seconds), "options": {"expires": seconds}}


CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "sync-incremental": _every("sync-incremental", DRILL_SYNC_EVERY_SECONDS),
    "deliver-gitlab-writes": _every("deliver-gitlab-writes", DRILL_SWEEP_EVERY_SECONDS),
    "deliver-salesforce-writes": _every("deliver-salesforce-writes", DRILL_SWEEP_EVERY_SECONDS),
}
