"""Settings for bench/load.py's server: production's, with static files collected into the run's own folder."""

from psplan.settings import *  # noqa: F403
from psplan.settings import env

STATIC_ROOT = env.str("PSPLAN_BENCH_STATIC_ROOT")
# Production's storage without its compression step, which takes minutes with brotli installed (locust
# brings it). Pages look static URLs up in the same manifest either way, and the load test fetches none.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
