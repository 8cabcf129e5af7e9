"""PS Plan settings: one module, driven by environment variables (see CONTRACT.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The project folder's .env (bin/run writes one) fills in what the environment leaves unset. PSPLAN_ENV_FILE
# names another file, or none when empty: bin/test's processes see only the environment the tests give them.
_ENV_FILE = env.str("PSPLAN_ENV_FILE", default=str(BASE_DIR / ".env"))
if _ENV_FILE and Path(_ENV_FILE).is_file():
    env.read_env(_ENV_FILE)


def _env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be 0 or 1 (or true/false), not {raw!r}")


def _env_int(name: str, default: int, *, low: int, high: int) -> int:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, not {value}")
    return value


def _env_float(name: str, default: float, *, low: float, high: float) -> float:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low:g} and {high:g}, not {value:g}")
    return value


def _env_url(name: str, default: str = "", *, schemes: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip().rstrip("/")
    if value and (urlsplit(value).scheme not in schemes or not urlsplit(value).netloc):
        raise ImproperlyConfigured(f"{name} must be a {'/'.join(schemes)} URL, not {value!r}")
    return value


def _env_rate(name: str, default: str) -> str:
    value = env.str(name, default=default).strip()
    if not re.fullmatch(r"[0-9]+/(second|minute|hour|day)", value):
        raise ImproperlyConfigured(
            f"{name} must look like 100/minute (per second, minute, hour or day), not {value!r}"
        )
    return value


def _refuse_weak_secret_key(key: str) -> None:
    # The same test as Django's security.W009, so `check --deploy` can never warn about a key that started.
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is too weak for production: it needs at least 50 characters, at least 5 "
            "different ones, and not Django's `django-insecure-` prefix. Make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )


DEBUG = _env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string in production, "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "django-insecure-psplan-development-only"
elif not DEBUG:
    _refuse_weak_secret_key(SECRET_KEY)

ALLOWED_HOSTS = [
    h.strip() for h in env.str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in env.str("DJANGO_CSRF_TRUSTED_ORIGINS", default="").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # API tokens on knox (shown once, stored as digests), `drf_create_token` for them, and their admin.
    "psplan",
    "rest_framework",
    "knox",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "opportunities",
    "scoping",
    "reporting",
]

MIDDLEWARE = [
    # Outermost, so the line it logs has the status the client really got (redirects and 400s included).
    "psplan.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "psplan.middleware.OddInputMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "psplan.middleware.SlidingSessionMiddleware",
    "psplan.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "psplan.urls"
WSGI_APPLICATION = "psplan.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "psplan.permissions.roles",
            ],
        },
    },
]

_DATABASE_ENGINES = {f"django.db.backends.{name}" for name in ("postgresql", "sqlite3", "mysql", "oracle")}
try:
    DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"].get("ENGINE") not in _DATABASE_ENGINES:
    raise ImproperlyConfigured(
        "DATABASE_URL must start with postgres://, sqlite:/// or another Django database scheme"
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A connection lives past one request (checked before reuse), so a page neither opens one nor prepares its
# statements again (below).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue up instead of failing: a transaction that began reading cannot take the write lock
    # while another thread (the heartbeat, a worker) writes, so each one takes it when it begins.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PostgreSQL's JIT compiler spent half a second compiling report queries that then ran in a tenth of
    # that (bench/reports.py): a web app's queries are too short to pay it back. `?options=` in
    # DATABASE_URL still wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
    # Prepared statements: PostgreSQL took longer to plan the pages' joins than to run them (bench/pages.py),
    # and a statement a connection has run five times is planned once. Behind a connection pooler in
    # transaction mode, which cannot keep them, set DATABASE_PREPARED_STATEMENTS=0.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "scoping:home"
LOGOUT_REDIRECT_URL = "login"

# --- Sign-in ---------------------------------------------------------------
# A session ends after this long without a request; every request starts the clock again.
PSPLAN_SESSION_IDLE_HOURS = _env_float("PSPLAN_SESSION_IDLE_HOURS", 8, low=0.1, high=24 * 30)
SESSION_COOKIE_AGE = round(PSPLAN_SESSION_IDLE_HOURS * 3600)

# Reverse proxies in front of PS Plan that append the client's address to X-Forwarded-For. With 0 the
# connection's own address counts, so a client cannot pick its address by sending the header itself.
PSPLAN_PROXY_COUNT = _env_int("PSPLAN_PROXY_COUNT", 0, low=0, high=5)

# django-axes: too many failed sign-ins for one username, or from one address, lock that username or
# address out of /login/ and /admin/login/ for a while. Staff unlock with `manage.py axes_reset_username`
# (or `axes_reset_ip`, `axes_reset`) or by deleting the access attempts in the admin.
AXES_FAILURE_LIMIT = _env_int("PSPLAN_SIGNIN_FAILURE_LIMIT", 5, low=1, high=1000)
AXES_COOLOFF_TIME = timedelta(minutes=_env_int("PSPLAN_SIGNIN_LOCKOUT_MINUTES", 15, low=1, high=7 * 1440))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "psplan.network.client_address"
AXES_VERBOSE = False

# Optional single sign-on with OpenID Connect (mozilla-django-oidc): on when a client id is set.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_ISSUER = _env_url("OIDC_OP_ISSUER", schemes=("http", "https"))
OIDC_OP_AUTHORIZATION_ENDPOINT = _env_url("OIDC_OP_AUTHORIZATION_ENDPOINT", schemes=("http", "https"))
OIDC_OP_TOKEN_ENDPOINT = _env_url("OIDC_OP_TOKEN_ENDPOINT", schemes=("http", "https"))
OIDC_OP_USER_ENDPOINT = _env_url("OIDC_OP_USER_ENDPOINT", schemes=("http", "https"))
OIDC_OP_JWKS_ENDPOINT = _env_url("OIDC_OP_JWKS_ENDPOINT", schemes=("http", "https"))
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256").strip()
# Add the scope that releases the roles claim when the provider needs one (e.g. `groups` on Okta).
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile").strip()
OIDC_USE_PKCE = True
OIDC_TIMEOUT = _env_int("OIDC_TIMEOUT", 10, low=1, high=120)
OIDC_AUTHENTICATION_CALLBACK_URL = "sso-callback"
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
# The claim that lists a user's roles, and which of its values make an engagement manager or an admin.
PSPLAN_OIDC_ROLES_CLAIM = env.str("PSPLAN_OIDC_ROLES_CLAIM", default="groups").strip()
PSPLAN_OIDC_EDITOR_ROLES = env.list("PSPLAN_OIDC_EDITOR_ROLES", default=["engagement_managers"])
PSPLAN_OIDC_ADMIN_ROLES = env.list("PSPLAN_OIDC_ADMIN_ROLES", default=["psplan_admins"])
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
if OIDC_ENABLED:
    _missing = [
        name
        for name in (
            "OIDC_RP_CLIENT_SECRET",
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
            "OIDC_OP_TOKEN_ENDPOINT",
            "OIDC_OP_USER_ENDPOINT",
            "OIDC_OP_JWKS_ENDPOINT",
        )
        if not globals()[name]
    ]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set, so SSO also needs {', '.join(_missing)}")

# Axes first: it refuses a locked-out username or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    *(["psplan.sso.RoleMappingBackend"] if OIDC_ENABLED else []),
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- HTTPS -----------------------------------------------------------------
# Production assumes HTTPS, served by a TLS proxy (which says so in X-Forwarded-Proto) or by gunicorn.
# DJANGO_HTTPS=0 is for a plain-HTTP internal network; the finer switches below override single parts.
HTTPS = _env_bool("DJANGO_HTTPS", not DEBUG)
_proxy_ssl_header = env.str(
    "DJANGO_SECURE_PROXY_SSL_HEADER", default="X-Forwarded-Proto" if HTTPS else ""
).strip()
if _proxy_ssl_header:
    if not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto, not "
            f"{_proxy_ssl_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
# Load balancers probe over plain HTTP and do not follow redirects.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = _env_int(
    "DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, low=0, high=63_072_000
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("DJANGO_SECURE_COOKIES", HTTPS)

# --- Content-Security-Policy (django-csp) -------------------------------------
# No inline script or style anywhere: outside text that slipped into markup could never run. htmx's
# own indicator <style> is switched off in base.html's htmx-config, and its CSS lives in psplan.css.
MIDDLEWARE.append("csp.middleware.CSPMiddleware")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}

# --- REST API --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "psplan.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["psplan.permissions.ReadAnyWriteEngagementManager"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "psplan.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": _env_rate("PSPLAN_API_THROTTLE_RATE", "6000/minute"),
        # Wrong API tokens per client address; past it, every token from there gets 429 for the window.
        "token_failures": _env_rate("PSPLAN_API_TOKEN_FAILURE_RATE", "20/minute"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# django-rest-knox keeps only a SHA-512 digest of each API token. Tokens last until revoked unless
# their owner picks an expiry; the prefix lets secret scanners recognise a leaked one.
REST_KNOX = {"TOKEN_TTL": None, "TOKEN_PREFIX": "psplan_", "AUTH_HEADER_PREFIX": "Token"}

SPECTACULAR_SETTINGS = {
    "TITLE": "PS Plan API",
    "DESCRIPTION": "Scoping issues, opportunities, engagement managers and PS reports.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Cache ------------------------------------------------------------------
# In-process by default; a shared cache (redis://…) makes API throttles and token checks hold across
# every server process.
try:
    CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(
        f"CACHE_URL is not a cache URL such as redis://127.0.0.1:6379/1: {exc}"
    ) from None
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Without timeouts a Redis that stops answering would hold every request that counts a throttle.
    CACHES["default"].setdefault("OPTIONS", {}).update(socket_connect_timeout=1, socket_timeout=1)

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if CELERY_BROKER_URL and urlsplit(CELERY_BROKER_URL).scheme not in {
    "redis",
    "rediss",
    "amqp",
    "memory",
    "filesystem",
}:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL must be a redis:// or amqp:// URL (or filesystem:// for one machine), "
        f"not {CELERY_BROKER_URL!r}"
    )
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
# Redis redelivers a task a dead worker had taken after this long: every task must end well within it
# (the hard time limit below), so a lost task is redone within minutes, not hours.
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": 20 * 60,
    # A request that queues a delivery must not hang on a broker that is down.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Sending a task reconnects through kombu's default_channel, which retries for about six seconds by
    # default: a request would hang that long. One quick retry; the periodic sweep sends what it missed.
    # (A worker's own reconnection follows broker_connection_max_retries, not these.)
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The broker bin/run uses when GitLab or Salesforce is configured: messages are files in the
    # project folder, so a worker with beat runs beside the app without Redis.
    _BROKER_FOLDER = BASE_DIR / ".celery" / "broker"
    _BROKER_FOLDER.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_FOLDER),
        "data_folder_out": str(_BROKER_FOLDER),
        "store_processed": False,
    }
# Syncs, GitLab deliveries and Salesforce deliveries each have a queue, so none waits behind another.
CELERY_TASK_ROUTES = {
    "scoping.tasks.sync_all_systems": {"queue": "sync"},
    "scoping.tasks.deliver_gitlab_writes": {"queue": "gitlab"},
    "opportunities.tasks.deliver_salesforce_writes": {"queue": "salesforce"},
}
PSPLAN_SYNC_EVERY_MINUTES = _env_int("PSPLAN_SYNC_EVERY_MINUTES", 5, low=1, high=1440)
CELERY_BEAT_SCHEDULE = {
    "sync-incremental": {
        "task": "scoping.tasks.sync_all_systems",
        "schedule": timedelta(minutes=PSPLAN_SYNC_EVERY_MINUTES),
        "kwargs": {"full": False},
        "options": {"expires": PSPLAN_SYNC_EVERY_MINUTES * 60},
    },
    "sync-full-nightly": {
        "task": "scoping.tasks.sync_all_systems",
        "schedule": crontab(hour=2, minute=30),
        "kwargs": {"full": True},
        "options": {"expires": 3600},
    },
    "deliver-gitlab-writes": {
        "task": "scoping.tasks.deliver_gitlab_writes",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    "apply-waiting-webhook-deliveries": {
        "task": "scoping.tasks.apply_waiting_webhook_deliveries",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    "prune-webhook-deliveries": {
        "task": "scoping.tasks.prune_webhook_deliveries",
        "schedule": crontab(hour=3, minute=15),
        "options": {"expires": 3600},
    },
    "weekly-my-work-digest": {
        "task": "scoping.digest.send_weekly_digest_emails",
        "schedule": crontab(day_of_week="mon", hour=7, minute=0),
        "options": {"expires": 6 * 3600},
    },
    "deliver-salesforce-writes": {
        "task": "opportunities.tasks.deliver_salesforce_writes",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
}
# Links in e-mails (the weekly digest) point here; e-mail goes through Django's backend (console by default).
PSPLAN_BASE_URL = _env_url("PSPLAN_BASE_URL", "http://127.0.0.1:8000", schemes=("http", "https"))
try:
    vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(
        f"EMAIL_URL is not an e-mail URL such as smtp://user:password@host:587: {exc}"
    ) from None
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="ps-plan@localhost")
# One sync (all systems) at a time: a second one is skipped. The holder renews its lease every quarter
# of this while it lives; a holder that died frees the lock, and its runs are marked abandoned, after it.
# A delivery run's claim on the writes it is sending is a lease of the same length, renewed the same way.
PSPLAN_SYNC_LOCK_TTL = _env_int("PSPLAN_SYNC_LOCK_TTL", 60, low=4, high=3600)
# `manage.py sync` (and a sync without a broker) retries deliveries that meet 429s, 5xx and timeouts
# for at most this many seconds before reporting what is still pending.
PSPLAN_DELIVERY_BUDGET = _env_int("PSPLAN_DELIVERY_BUDGET", 120, low=0, high=3600)

# --- GitLab ----------------------------------------------------------------
GITLAB_URL = _env_url("GITLAB_URL", "https://gitlab.com", schemes=("http", "https"))
GITLAB_TOKEN = env.str("GITLAB_TOKEN", default="")
GITLAB_PROJECT = env.str(
    "GITLAB_PROJECT",
    default="gitlab-com/customer-success/professional-services-group/ww-consulting/ps-plan",
).strip()
if not GITLAB_PROJECT:
    raise ImproperlyConfigured("GITLAB_PROJECT must be a project path or numeric id")
GITLAB_SCOPING_LABEL = env.str("GITLAB_SCOPING_LABEL", default="Services Calculator").strip()
GITLAB_WEBHOOK_SECRET = env.str("GITLAB_WEBHOOK_SECRET", default="")
GITLAB_TIMEOUT = _env_int("GITLAB_TIMEOUT", 20, low=1, high=600)
# Within one call: retries of 429/5xx/dropped connections, waiting base·2ⁿ seconds, never above the cap.
GITLAB_MAX_RETRIES = _env_int("GITLAB_MAX_RETRIES", 5, low=0, high=20)
GITLAB_BACKOFF_BASE = _env_float("GITLAB_BACKOFF_BASE", 0.5, low=0.0, high=60.0)
GITLAB_BACKOFF_CAP = _env_float("GITLAB_BACKOFF_CAP", 30.0, low=0.0, high=3600.0)
# GitLab's updated_at can lag the change it describes: incremental syncs re-read this many seconds.
# It must also exceed how long a full listing takes (an issue edited while a full sync pages on).
GITLAB_SYNC_OVERLAP = _env_int("GITLAB_SYNC_OVERLAP", 600, low=0, high=7 * 86_400)
# Outbox: a write GitLab could not take waits base·2ⁿ seconds (at most the cap) and is retried for
# ever — never lost. (A delivery run's claim on its writes lives as long as its process: see queue.drain.)
GITLAB_OUTBOX_RETRY_BASE = _env_int("GITLAB_OUTBOX_RETRY_BASE", 30, low=1, high=3600)
GITLAB_OUTBOX_RETRY_CAP = _env_int("GITLAB_OUTBOX_RETRY_CAP", 3600, low=1, high=86_400)

# --- Salesforce ------------------------------------------------------------
SALESFORCE_INSTANCE_URL = _env_url("SALESFORCE_INSTANCE_URL", schemes=("https",))
SALESFORCE_ACCESS_TOKEN = env.str("SALESFORCE_ACCESS_TOKEN", default="")
SALESFORCE_USERNAME = env.str("SALESFORCE_USERNAME", default="")
SALESFORCE_PASSWORD = env.str("SALESFORCE_PASSWORD", default="")
SALESFORCE_SECURITY_TOKEN = env.str("SALESFORCE_SECURITY_TOKEN", default="")
SALESFORCE_API_VERSION = env.str("SALESFORCE_API_VERSION", default="59.0").strip()
if not SALESFORCE_API_VERSION.replace(".", "", 1).isdigit() or "." not in SALESFORCE_API_VERSION:
    raise ImproperlyConfigured(f"SALESFORCE_API_VERSION must look like 59.0, not {SALESFORCE_API_VERSION!r}")
SALESFORCE_TIMEOUT = _env_int("SALESFORCE_TIMEOUT", 30, low=1, high=600)
# Logical name -> Salesforce API name; override single entries here when an org names a field differently.
SALESFORCE_FIELD_NAMES: dict[str, str] = {}

# --- Rules -----------------------------------------------------------------
PSPLAN_FISCAL_YEAR_START_MONTH = _env_int("PSPLAN_FISCAL_YEAR_START_MONTH", 2, low=1, high=12)
PSPLAN_STALE_AFTER_MONTHS = _env_int("PSPLAN_STALE_AFTER_MONTHS", 2, low=1, high=36)
PSPLAN_STALE_WARNING_DAYS = _env_int("PSPLAN_STALE_WARNING_DAYS", 14, low=0, high=365)
PSPLAN_MAX_AUTO_CLOSES_PER_RUN = _env_int("PSPLAN_MAX_AUTO_CLOSES_PER_RUN", 200, low=0, high=100_000)
# The mirror reads no CurrencyIsoCode (single-currency orgs have none), so reports name it from here.
PSPLAN_CURRENCY = env.str("PSPLAN_CURRENCY", default="USD").strip().upper()
if not re.fullmatch(r"[A-Z]{3}", PSPLAN_CURRENCY):
    raise ImproperlyConfigured(
        f"PSPLAN_CURRENCY must be an ISO 4217 code such as USD, not {PSPLAN_CURRENCY!r}"
    )

GITLAB_ENABLED = bool(GITLAB_TOKEN)
SALESFORCE_ENABLED = bool(SALESFORCE_INSTANCE_URL and (SALESFORCE_ACCESS_TOKEN or SALESFORCE_USERNAME))
