"""ca_portal settings, read from the environment (see README "Configuration").

Bad values stop the process at start-up with a message naming the variable. There are no
production secret defaults: without DJANGO_SECRET_KEY a random key is made once and kept in
the var dir (mode 0600), exactly like the CA key passphrase file.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_choice,
    env_file_or_none,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    renewal_reminder_days,
)
from core.listen import DEFAULT_HOST, DEFAULT_PORT, site_url_for
from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("CA_PORTAL_VAR_DIR", BASE_DIR / "var")
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    from_env = os.environ.get("DJANGO_SECRET_KEY", "")
    if from_env:
        if len(from_env) < 32:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters long")
        return from_env
    path = VAR_DIR / "django-secret-key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="ascii").strip()


SECRET_KEY = _secret_key()


def _default_site_url() -> str:
    """Where `make run HOST=... PORT=...` listens (core/listen.py); read only when SITE_URL is unset."""
    return site_url_for(
        env_str("HOST", DEFAULT_HOST) or DEFAULT_HOST, env_int("PORT", DEFAULT_PORT, minimum=1, maximum=65535)
    )


SITE_URL = (os.environ.get("SITE_URL") or _default_site_url()).rstrip("/")
_site = urlsplit(SITE_URL)
if _site.scheme not in {"http", "https"} or not _site.hostname or _site.path or _site.query:
    raise ImproperlyConfigured(f"SITE_URL must look like https://vpn-ca.example.org, got {SITE_URL!r}")
SITE_IS_HTTPS = _site.scheme == "https"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", _site.hostname])
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "authority",
    "enrollment",
    "bundles",
    "audit",
]

MIDDLEWARE = [
    "core.logs.RequestContext",  # first: a request id for every line logged about the request
    "core.metrics.count_requests",  # every response, whichever middleware made it
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.content_security_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "authority.middleware.session_absolute_timeout",
    "django_otp.middleware.OTPMiddleware",
    "authority.middleware.require_admin_otp",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "core.middleware.ServiceErrorPages",
    "core.pages.method_not_allowed_pages",  # a browser's GET of a POST-only address: a page, not a blank 405
]
CSRF_FAILURE_VIEW = "core.pages.csrf_failure"  # a page in the site's style, not Django's bare 403

ROOT_URLCONF = "ca_portal.urls"
WSGI_APPLICATION = "ca_portal.wsgi.application"

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
                "ca_portal.context.portal",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        url = f"sqlite:///{VAR_DIR / 'ca_portal.sqlite3'}"
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Django understands: {exc}") from None
    engine = str(config["ENGINE"])
    if engine.endswith("sqlite3"):
        # WAL: ~5x the commit rate of the default journal (docs/architecture.md); IMMEDIATE: writers queue on
        # the busy timeout instead of failing with "database is locked" when two upgrade at once.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    elif "postgresql" in engine:
        config["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0, maximum=3600)
        config["CONN_HEALTH_CHECKS"] = True
    else:
        raise ImproperlyConfigured(f"DATABASE_URL must be sqlite:// or postgres://, got engine {engine}")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Lockout after 5 failed logins per (user name, address), NSR (k); the cool-off is configurable.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = 1 if env_bool("BEHIND_TLS_PROXY", False) else 0
# Two-factor (TOTP) for CA admins, enforced unless DEBUG (NSR m, n).
OTP_REQUIRED_FOR_ADMINS = env_bool("OTP_REQUIRED", not DEBUG)
OTP_TOTP_ISSUER = "ca_portal"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's output. A deployment serves it from its proxy (CA_PORTAL_STATIC_ROOT, made by
# deploy/tmpfiles.d); the default inside the var dir is made here.
STATIC_ROOT = env_path("CA_PORTAL_STATIC_ROOT", VAR_DIR / "static")
if not os.environ.get("CA_PORTAL_STATIC_ROOT"):
    STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True  # serves static/ even before collectstatic has run

# Sessions and cookies: secure cookies whenever the site is served over HTTPS.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60, minimum=60, maximum=7 * 24 * 3600)
SESSION_SAVE_EVERY_REQUEST = True  # the age above is an idle timeout
# However active, a session ends this long after sign-in (ASVS 7.3.2).
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 12 * 3600, minimum=300, maximum=30 * 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = SITE_IS_HTTPS
CSRF_COOKIE_SECURE = SITE_IS_HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_HSTS_SECONDS = 31536000 if SITE_IS_HTTPS else 0
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Behind the TLS proxy (deploy/nginx/ca-portal.conf, docs/deploy.md), which ends TLS, redirects plain
# HTTP and replaces X-Forwarded-Proto and X-Forwarded-For on every request it passes on.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    # The client's address comes from the proxy's X-Forwarded-For, not from the connection (the proxy,
    # or nobody at all on a unix socket): sign-in lockout, the audit log and download records use it.
    MIDDLEWARE.insert(0, "core.proxy.forwarded_client_address")
SECURE_SSL_REDIRECT = SITE_IS_HTTPS and BEHIND_TLS_PROXY
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes that talk to gunicorn's socket directly
SECURE_HSTS_INCLUDE_SUBDOMAINS = SITE_IS_HTTPS and env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
# Asking browsers to preload the name is the domain owner's decision (hstspreload.org takes only
# registrable domains, and leaving the list is slow): off unless HSTS_PRELOAD is set, so
# `check --deploy`'s reminder (W021) is answered here.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Mail to peer owners: console by default; SMTP when EMAIL_HOST is set.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"ca_portal <noreply@{_site.hostname}>")

# --- the JSON API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ca_portal API",
    "DESCRIPTION": (
        "Certificate authority and enrollment portal for IPsec VPNs.\n\n"
        "Authenticate with `Authorization: Token KEY` (`manage.py drf_create_token USER`) or a browser "
        "session; session requests that change something need the CSRF token (`X-CSRFToken`). Without "
        "credentials, or with a bad token, the answer is 401 with `WWW-Authenticate: Token`. Request bodies "
        'are JSON, at most 64 KiB. Errors: `{"errors": {field: [message]}}` with 400 (bad input; undeclared '
        "fields are refused), 403 (not allowed), 404 (no such object, or another user's), 409 (the state does "
        "not allow it), 413 (body too large), 415 (not JSON)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Two response fields are both called "status" with different values: name their enums.
    "ENUM_NAME_OVERRIDES": {
        "PeerStatusEnum": "enrollment.serializers.PEER_STATUSES",
        "CertificateStatusEnum": "audit.api.CERTIFICATE_STATUSES",
    },
}

# --- the CA ---------------------------------------------------------------------------------
CA_KEY_DIR = VAR_DIR / "keys"
CA_KEY_PASSPHRASE_FILE = env_path("CA_KEY_PASSPHRASE_FILE", VAR_DIR / "ca-key-passphrase")
# Signed audit checkpoints are appended here (O_APPEND, fsync) by the signer: keep it off the
# database's disk and backups, ideally append-only (chattr +a) or shipped elsewhere (T37).
CA_AUDIT_CHECKPOINT_FILE = env_path("CA_AUDIT_CHECKPOINT_FILE", VAR_DIR / "audit-checkpoints.log")
CA_CRL_URL = f"{SITE_URL}/crl.der"
CA_DEFAULT_VALIDITY_DAYS = env_int("CA_DEFAULT_VALIDITY_DAYS", 365, minimum=1, maximum=825)
# A request still pending or signing after this long is queued again by the sweeper.
# CRLs: nextUpdate this many days after thisUpdate; a new CRL is made every CRL_RENEW_HOURS (and at
# half-life at the latest). Peers fetch it every CRL_REFRESH_HOURS (bin/ca-portal-refresh, scheduled by
# install.sh), so a peer that cannot reach the portal keeps working for about the validity minus the
# renewal interval; authority/crl_policy.py explains the trade-off and warns about a risky choice.
CRL_VALIDITY_DAYS = env_int("CRL_VALIDITY_DAYS", 30, minimum=1, maximum=365)
CRL_RENEW_HOURS = env_int("CRL_RENEW_HOURS", 24, minimum=1, maximum=365 * 24)
CRL_REFRESH_HOURS = env_int("CRL_REFRESH_HOURS", 6, minimum=1, maximum=24)
# The gateway's bin/ca-portal-sync runs this often (install.sh --sync-token-file schedules it).
GATEWAY_SYNC_MINUTES = env_int("GATEWAY_SYNC_MINUTES", 5, minimum=1, maximum=60)
# Site overrides of templates/configs/ (same relative names, e.g. isakmpd/gateway.conf.j2).
CONFIG_TEMPLATE_OVERRIDES = env_path("CA_PORTAL_CONFIG_TEMPLATES", VAR_DIR / "configs")
CA_REQUEUE_AFTER_SECONDS = env_int("CA_REQUEUE_AFTER_SECONDS", 60, minimum=5, maximum=86400)


# Renewal: owners are mailed this many days before their certificate expires, and the old certificate
# is revoked as superseded this many hours after the renewal's bundle was first downloaded.
RENEWAL_REMINDER_DAYS = renewal_reminder_days(env_str("RENEWAL_REMINDER_DAYS", "30,7,1"))
RENEWAL_GRACE_HOURS = env_int("RENEWAL_GRACE_HOURS", 72, minimum=0, maximum=90 * 24)
# EST (RFC 7030): the Retry-After an EST client gets while its request waits for a CA admin.
# strongSwan's `pki --est` polls at the larger of this and its --interval.
EST_RETRY_AFTER_SECONDS = env_int("EST_RETRY_AFTER_SECONDS", 60, minimum=1, maximum=24 * 3600)
# `manage.py serve` runs its Celery worker at this niceness, below gunicorn (0 = the same).
WORKER_NICE = env_int("CA_PORTAL_WORKER_NICE", 10, minimum=0, maximum=19)

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, got {REDIS_URL!r}")
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1, maximum=86400),
    }
else:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT = "ca_portal.broker:Transport"  # atomic message files, see ca_portal/broker.py
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The default 1 s polling gives ~2 tasks/s; 10 ms gives ~300 (docs/architecture.md).
        "polling_interval": 0.01,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "render"
CELERY_TASK_ROUTES = {
    "authority.certificates_issue_pending": {"queue": "signer"},
    "enrollment.peer_key_generate": {"queue": "signer"},  # keys are made in the signer pool, never on the web
    "authority.crl_publish": {"queue": "signer"},  # CRLs are signed with the CA key
    "authority.crl_renew_if_due": {"queue": "signer"},
    "authority.signer_heartbeat": {"queue": "signer"},  # proves that a signer takes its queue (/readyz)
    "authority.audit_checkpoint": {"queue": "signer"},  # signed with the CA key (docs/security.md T37)
}
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How long the worker waits for a result from a pool child that died before declaring it lost
# and re-queueing its message (acks_late + reject_on_worker_lost). We keep no results, so the
# default 10 s would only delay recovery after a crash.
CELERY_WORKER_LOST_WAIT = 1.0
# Celery's Django fixup closes the database connection around every task unless this is set
# (it ignores CONN_MAX_AGE): measured 2.6 ms per task for a fresh PostgreSQL connection.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-requests": {"task": "authority.requests_requeue_stale", "schedule": 30.0},
    "requeue-stale-portal-keys": {"task": "enrollment.portal_keys_requeue_stale", "schedule": 30.0},
    "render-stale-bundles": {"task": "bundles.bundles_render_stale", "schedule": 30.0},
    "renew-crl": {"task": "authority.crl_renew_if_due", "schedule": 600.0},
    "check-audit-chain": {"task": "authority.audit_check", "schedule": 3600.0},
    # Signed checkpoints of the audit log; appends also wake it every 100 events (authority/checkpoints.py).
    "audit-checkpoint": {"task": "authority.audit_checkpoint", "schedule": 300.0, "options": {"expires": 300}},
    "supersede-renewed": {"task": "enrollment.renewals_supersede", "schedule": 3600.0},
    "renewal-reminders": {"task": "enrollment.renewal_reminders_send", "schedule": 3600.0},
    # A beat nobody took within a minute is worth nothing: a signer back after an outage skips it.
    "signer-heartbeat": {"task": "authority.signer_heartbeat", "schedule": 30.0, "options": {"expires": 60}},
}

# --- operations: logs, metrics --------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, user, peer_id).
# Both formats cut one-time link tokens and credentials out of every line (core/logs.py).
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
# Celery replaces the root logger's handlers in its workers unless told not to: JSON lines would
# stop there. (Plain lines keep Celery's own format in the workers, which log no URLs.)
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"

# Process counters of the web processes (gunicorn workers), one file per process, added up when
# /metrics is scraped (core/metrics.py). Set before anything imports prometheus_client.
METRICS_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")))
METRICS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


# /metrics answers `Authorization: Bearer <the file's content>`, or a scraper connecting directly
# from one of these addresses (never a request forwarded by a proxy). Neither set: /metrics is a 404.
METRICS_TOKEN_FILE = env_file_or_none("METRICS_TOKEN_FILE")
METRICS_ALLOWED_ADDRESSES = env_networks("METRICS_ALLOWED_ADDRESSES")
