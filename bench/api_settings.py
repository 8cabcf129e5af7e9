"""Settings for bench/api.py's server: the real app, plus the bare comparison views of bench/api_urls.py."""

from psplan.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_urls"
