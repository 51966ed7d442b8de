"""Agentdeck settings: everything comes from the environment, with embedded defaults.

With nothing set, `make run` gets the embedded shape: a SQLite file under `var/`, the
in-process channel layer and the inline runner. `DATABASE_URL` switches to PostgreSQL,
`REDIS_URL` to Redis for the channel layer and counters. Bad values fail loudly.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def envint(name: str, default: str) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def envlist(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blanks are dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envsecret(name: str, default: str = "") -> str:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


VAR_DIR = Path(envstr("AGENTDECK_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Prometheus multiprocess mode: every process (web, Celery workers, CLI) writes its counters
# into this folder and /metrics adds them up. It must be set before prometheus_client loads,
# and be shared by the processes that should report together (one host, or a shared volume).
PROMETHEUS_MULTIPROC_DIR = envstr("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", PROMETHEUS_MULTIPROC_DIR)
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# Scrapers send `Authorization: Bearer <METRICS_TOKEN>`; staff sessions may always read /metrics.
METRICS_TOKEN = envsecret("METRICS_TOKEN")


def _embedded_secret_key() -> str:
    """A per-install random key kept in var/, so sessions survive restarts of `make run`."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        import secrets

        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = envbool("DEBUG", "false")
SECRET_KEY = envsecret("SECRET_KEY") or _embedded_secret_key()
ALLOWED_HOSTS = [h.strip() for h in envstr("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in envstr("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "mcpgateway",
    "orchestrator",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.TracingMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.InputGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
                "dashboard.context.team_context",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------
# SQLite runs in WAL mode with synchronous=FULL: every committed step survives power loss.
# IMMEDIATE transactions take the write lock up front, so concurrent writers queue instead
# of failing with "database is locked" half-way through a step.
SQLITE_PATH = Path(envstr("SQLITE_PATH", str(VAR_DIR / "agentdeck.sqlite3")))
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;",
    "transaction_mode": "IMMEDIATE",
}
DATABASE_URL = envstr("DATABASE_URL")
# PostgreSQL connection budget: each process (web, each worker process, beat) opens at most
# DB_POOL_MAX connections, from a psycopg pool it shares between all its threads (requests,
# db writers, the engine's loads). The server sees at most
#     web processes * DB_POOL_MAX + worker processes * DB_POOL_MAX + beat's DB_POOL_MAX
# connections (a prefork worker with --concurrency=C counts C processes). A thread that waits
# longer than DB_POOL_TIMEOUT_S for a free connection gets an error. DB_POOL_MAX=0 turns the
# pool off (e.g. behind PgBouncer): then each thread keeps its own connection DB_CONN_MAX_AGE s.
DB_POOL_MIN = envint("DB_POOL_MIN", "1")
DB_POOL_MAX = envint("DB_POOL_MAX", "4")
DB_POOL_TIMEOUT_S = float(envstr("DB_POOL_TIMEOUT_S", "30"))
if DB_POOL_MAX < 0 or DB_POOL_MIN < 0 or (DB_POOL_MAX and DB_POOL_MIN > DB_POOL_MAX):
    raise ImproperlyConfigured(f"need 0 <= DB_POOL_MIN <= DB_POOL_MAX, got {DB_POOL_MIN} and {DB_POOL_MAX}")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", "60"))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django returns them
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_MIN, "max_size": DB_POOL_MAX, "timeout": DB_POOL_TIMEOUT_S, "max_idle": 60}
        # Django's backend, whose pool hands out no connection the server dropped (config/postgresql).
        DATABASES["default"]["ENGINE"] = "config.postgresql"
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The same settings whether the file comes from SQLITE_PATH or a sqlite:// DATABASE_URL.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer and counters -----------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# How often an open live stream (a run page's websocket, the team socket, the API's event
# stream) re-checks that its viewer may still watch, and catches up from the database on
# events whose live publication was lost (a channel-layer stall pauses publishing).
LIVE_RECHECK_S = float(envstr("AGENTDECK_LIVE_RECHECK_S", "5.0"))

# --- run execution ----------------------------------------------------------------------
# Runners are chosen by name from orchestrator.runners.RUNNERS: "inline" (in this process)
# or "celery" (workers), the default when a broker is configured.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
RUNNER = envstr("AGENTDECK_RUNNER", "celery" if CELERY_BROKER_URL else "inline")
# A run's task is acknowledged only once it ended: a worker that dies leaves it to another.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# A worker process holds up to this many runs at once, all on one event loop (Celery's threads
# pool, one waiting thread per run: config/celery.py, orchestrator.runners.worker_pool).
AGENTDECK_RUNS_PER_WORKER = envint("AGENTDECK_RUNS_PER_WORKER", "500")
# A warm worker shutdown lets tool calls in flight end for up to this long (starting no new
# ones) before it hands its runs back (orchestrator.runners.worker_pool).
AGENTDECK_SHUTDOWN_GRACE_S = envint("AGENTDECK_SHUTDOWN_GRACE_S", "20")
# The web process ends this long after its server began to exit, if a request cut off by the
# shutdown still holds a thread then (after running its exit handlers: config/exit_watchdog.py).
AGENTDECK_WEB_EXIT_GRACE_S = envint("AGENTDECK_WEB_EXIT_GRACE_S", "5")
if AGENTDECK_WEB_EXIT_GRACE_S < 0:
    raise ImproperlyConfigured(f"AGENTDECK_WEB_EXIT_GRACE_S must be 0 or more, got {AGENTDECK_WEB_EXIT_GRACE_S}")
if AGENTDECK_RUNS_PER_WORKER < 1:
    raise ImproperlyConfigured(f"AGENTDECK_RUNS_PER_WORKER must be at least 1, got {AGENTDECK_RUNS_PER_WORKER}")
# A broker that does not answer fails a publish within about a second (bounded connect and
# socket timeouts, two quick retries) instead of hanging the request that starts a run; the
# run stays queued and is published again every REDISPATCH_EVERY_S until the broker is back.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT_S", "3600"),
                                   "socket_connect_timeout": 1.0, "socket_timeout": 5.0}
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
# A redis:// broker is read with kombu's Redis transport taking a burst of messages per round
# trip (config/redis_broker.py); other brokers with kombu's own transport (amqp://; also
# rediss://, whose TLS set-up this transport has not been tried with here).
if CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "config.redis_broker:Transport"
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.3}
REDISPATCH_EVERY_S = float(envstr("REDISPATCH_EVERY_S", "1"))
# Beat's sweep requeues a queued run nobody claimed for this long (the process that should
# have published it died during a broker outage), and a running run whose lease expired.
STUCK_QUEUED_S = envint("STUCK_QUEUED_S", "60")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-runs": {"task": "orchestrator.tasks.requeue_stuck_runs_task", "schedule": envint("STUCK_RUNS_EVERY_S", "30")},
    "deliver-webhooks": {"task": "orchestrator.tasks.deliver_webhooks_task", "schedule": envint("WEBHOOKS_EVERY_S", "5")},
}
# One webhook request's timeout; a sender that died mid-send is replaced after 3x this.
WEBHOOK_TIMEOUT_S = envint("WEBHOOK_TIMEOUT_S", "10")
# Which toolbox runs use (a factory taking a team id); the MCP gateway replaces the default.
AGENTDECK_TOOLBOX = envstr("AGENTDECK_TOOLBOX", "mcpgateway.dispatch.team_gateway")
# A worker's claim on a run lasts this long and is renewed every third of it while it runs.
RUN_LEASE_S = envint("AGENTDECK_RUN_LEASE_S", "30")
# How long buffered events may wait before they are flushed without a step boundary.
EVENT_FLUSH_MS = envint("AGENTDECK_EVENT_FLUSH_MS", "25")

# --- MCP gateway ------------------------------------------------------------------------
# Fernet key for secrets at rest; derived from SECRET_KEY when unset.
AGENTDECK_ENCRYPTION_KEY = envsecret("AGENTDECK_ENCRYPTION_KEY")
GATEWAY_RESULT_MAX_CHARS = envint("GATEWAY_RESULT_MAX_CHARS", "100000")
# Grants and the tool catalogue are cached per process for this long (revocations take effect within it).
GATEWAY_CACHE_TTL_S = float(envstr("GATEWAY_CACHE_TTL_S", "1.0"))
# How long an external MCP client's call waits for a human approval before it is refused.
GATEWAY_APPROVAL_WAIT_S = envint("GATEWAY_APPROVAL_WAIT_S", "300")
# Connect to enabled tool servers when the process starts serving (web, worker).
GATEWAY_AUTOSTART = envbool("GATEWAY_AUTOSTART", "true")
# Opt-in: the web process runs the gateway (upstream sessions, inline runs) on the web server's
# own event loop instead of a second loop thread: no hand-off between loops per /mcp tool call
# (~0.5 ms CPU less per call measured), but any blocking work an inline run does (a slow
# detector, a sync library) then stalls HTTP and websockets too. Off by default.
GATEWAY_ON_SERVER_LOOP = envbool("GATEWAY_ON_SERVER_LOOP", "false")
# /mcp fast path: a bearer key's principal is cached this long (a revoked key stops working within it).
MCP_KEY_CACHE_TTL_S = float(envstr("MCP_KEY_CACHE_TTL_S", "5.0"))
# /mcp: open 2025-11-25 sessions one team may hold at once (the SDK's own cap, 10,000, is
# for the whole process: one team's leaky client would lock the others out).
MCP_SESSIONS_PER_TEAM = envint("MCP_SESSIONS_PER_TEAM", "200")
if MCP_SESSIONS_PER_TEAM <= 0:
    raise ImproperlyConfigured(f"MCP_SESSIONS_PER_TEAM must be a positive number, got {MCP_SESSIONS_PER_TEAM}")
# /mcp calls outside a run: audit rows are committed in batches, this long after the first
# queued row or at this many rows, off the request path (a normal stop flushes them).
GATEWAY_AUDIT_FLUSH_MS = envint("GATEWAY_AUDIT_FLUSH_MS", "20")
GATEWAY_AUDIT_BATCH_ROWS = envint("GATEWAY_AUDIT_BATCH_ROWS", "200")

# --- outbound guard (SSRF) ----------------------------------------------------------------
# URLs a team member can set (remote tool servers, webhooks, model base URLs) may not reach
# loopback, private, link-local, multicast or metadata addresses, except these hosts and
# CIDR ranges (comma separated), e.g. "ollama.internal,10.20.0.0/16,127.0.0.1".
AGENTDECK_OUTBOUND_ALLOW = envlist("AGENTDECK_OUTBOUND_ALLOW")

# --- model providers ---------------------------------------------------------------------
ANTHROPIC_API_KEY = envsecret("ANTHROPIC_API_KEY")
# Who may use the instance's own provider keys with agents that name no credential: "all" teams
# (the embedded default), or only the teams an operator "offered" an environment credential to.
AGENTDECK_INSTANCE_KEYS = envstr("AGENTDECK_INSTANCE_KEYS", "all")
if AGENTDECK_INSTANCE_KEYS not in ("all", "offered"):
    raise ImproperlyConfigured(f"AGENTDECK_INSTANCE_KEYS must be all or offered, got {AGENTDECK_INSTANCE_KEYS!r}")
ANTHROPIC_BASE_URL = envstr("ANTHROPIC_BASE_URL")
OPENAI_API_KEY = envsecret("OPENAI_API_KEY")
OPENAI_BASE_URL = envstr("OPENAI_BASE_URL")
MODEL_TIMEOUT_S = envint("MODEL_TIMEOUT_S", "120")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# The test suite (tests/conftest.py, for itself and the servers and workers it starts) hashes
# its users' passwords with MD5: PBKDF2 takes 0.33 s a password here, and two users a test made
# it a quarter of the suite's time. A test-only switch: never set it for a real instance (each
# login would rewrite its user's hash as MD5, and switching it off again would lock them out).
if envbool("AGENTDECK_TEST_FAST_PASSWORDS", "0"):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                        "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve static files straight from the app folders (no collectstatic): tests, development.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", "false")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# JSON lines with run, step and trace ids and secrets redacted (config/logging.py), or plain text.
LOG_FORMAT = envstr("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logging.JsonFormatter"},
                   "text": {"()": "config.logging.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "text"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
}

# The built-in sandbox tool server (issue 7): these become its command-line flags when
# `seed_demo` / `make run` (or `mcpgateway.actions.sandbox.do_install_sandbox`) creates the `sandbox` server;
# afterwards the server row's args are the truth (editable on the Tools page or by import).
# The engine sandbox containers run on (the docker SDK's variable; default: the local socket).
SANDBOX_DOCKER_HOST = envstr("DOCKER_HOST")
SANDBOX = {
    "image": envstr("AGENTDECK_SANDBOX_IMAGE", "agentdeck/sandbox-python:1"),
    "mode": envstr("AGENTDECK_SANDBOX_MODE", "execution"),  # or "session": one container per run
    "runtime": envstr("AGENTDECK_SANDBOX_RUNTIME", ""),  # "runsc" for gVisor, if the engine has it
    "memory_mb": envint("AGENTDECK_SANDBOX_MEMORY_MB", "256"),
    "cpus": float(envstr("AGENTDECK_SANDBOX_CPUS", "1")),
    "pids": envint("AGENTDECK_SANDBOX_PIDS", "64"),
    "timeout_s": float(envstr("AGENTDECK_SANDBOX_TIMEOUT_S", "30")),
    "workspace_mb": envint("AGENTDECK_SANDBOX_WORKSPACE_MB", "64"),
    "output_bytes": envint("AGENTDECK_SANDBOX_OUTPUT_BYTES", "65536"),
    "network": envstr("AGENTDECK_SANDBOX_NETWORK", "bridge"),
    "pool": envint("AGENTDECK_SANDBOX_POOL", "2"),
    "state_dir": str(VAR_DIR / "sandbox"),  # execution-mode workspaces, kept across server restarts
}
