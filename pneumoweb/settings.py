"""Settings, driven by environment variables.

With no environment at all the project runs on embedded defaults (SQLite and a
file-system Celery transport under ``var/``) so that it works on a machine
without servers. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to
PostgreSQL and Redis.
"""

import hashlib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from ml import constants as limits
from ml.config import DEFAULT_PRESET

from .env import env, env_bool, env_choice, env_float, env_int, env_list, unknown_names
from .var_dir import broker_folders, default_var_dir, read_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
# Made by `python -m pneumoweb.var_dir` (bin/run, bin/worker and bin/test run it): nothing is written here.
VAR_DIR = default_var_dir()
SECRET_KEY = env("DJANGO_SECRET_KEY") or read_secret_key(VAR_DIR)
if not SECRET_KEY:
    raise ImproperlyConfigured(f"Set DJANGO_SECRET_KEY, or run `python -m pneumoweb.var_dir` once to give "
                               f"{VAR_DIR} a secret key of its own (bin/run does).")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "knox",
    "axes",
    "auditlog",
    # The second factor (accounts/): one-time codes from an authenticator app, and recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # The project's apps, lowest layer first (ml, plain PyTorch, lies below them all; tests/test_layers.py).
    "core",
    "audit",  # after "auditlog": its admin replaces auditlog's
    "accounts",
    "diagnosis",
    "monitoring",
    "pacs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "core.middleware.RefuseUndecodableHeaders",
    "core.middleware.RefuseNulCharacters",
    "core.middleware.RefuseRepeatedApiParameters",
    "core.middleware.PrivateResponses",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session has given a one-time code (django-otp).
    "django_otp.middleware.OTPMiddleware",
    "audit.trail.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After the user and messages are known: ends a browser session idle too long (accounts/idle.py).
    "accounts.idle.IdleSignOut",
    # A session that still owes its one-time code, or an enrolment, reaches nothing else (accounts/).
    "accounts.middleware.RequireSecondFactor",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.DatabaseUnavailable",
    "diagnosis.media.AnswerChangedFiles",  # 409 for a stored file that failed its integrity check
    # Last: turns a sign-in refused for a lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pneumoweb.urls"
WSGI_APPLICATION = "pneumoweb.wsgi.application"

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
                "diagnosis.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write the same file: WAL + immediate transactions avoid
    # "database is locked" between the two processes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env("CACHE_URL")}
        if env("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    # First: refuses a sign-in while its username + address is locked out (pages, admin and API alike).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is locked
# for the cool-off time (counted from the lockout: more guesses do not extend it), then the user
# can try again; an administrator can unlock at once (admin "Access attempts", or `manage.py axes_reset`).
AXES_FAILURE_LIMIT = env_int("PNEUMOWEB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PNEUMOWEB_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_VERBOSE = False
# Wrong one-time codes count with wrong passwords (accounts/lockout.py); a code is never written into
# axes' records of the attempt.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]
# The second factor (accounts/second_factor.py): RFC 6238 codes from an authenticator app, plus ten
# recovery codes. Required of staff, superusers and reviewers unless PNEUMOWEB_OTP_REQUIRED=false (the
# embedded demo, bin/run); _FOR_CLINICIANS requires it of every account. Anyone may turn one on.
PNEUMOWEB_OTP_REQUIRED = env_bool("PNEUMOWEB_OTP_REQUIRED", True)
PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS = env_bool("PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS", False)
OTP_TOTP_ISSUER = "PneumoWeb"  # what the authenticator app shows beside the username
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin's device pages never show a secret key or its QR code
# Automatic sign-out (accounts/idle.py): a browser session without activity for IDLE_TIMEOUT seconds is
# ended server-side, and its pages warn IDLE_WARNING seconds before. A page's background polling is
# not activity. API tokens are not affected (they expire after PNEUMOWEB_TOKEN_TTL_HOURS).
PNEUMOWEB_IDLE_TIMEOUT_SECONDS = env_int("PNEUMOWEB_IDLE_TIMEOUT_SECONDS", 900)
PNEUMOWEB_IDLE_WARNING_SECONDS = env_int("PNEUMOWEB_IDLE_WARNING_SECONDS", 120)
# The session cookie and its row outlive the last activity by ten minutes only: long enough for the
# next request to be told why it was signed out, too short to matter (the server refuses it anyway).
SESSION_COOKIE_AGE = PNEUMOWEB_IDLE_TIMEOUT_SECONDS + 600

# Behind HTTPS (DJANGO_SECURE_COOKIES=true): secure cookies, HSTS, and plain HTTP redirected.
SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", SECURE)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
if env_bool("DJANGO_BEHIND_PROXY", False):
    # The TLS-terminating proxy says which scheme the client used.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Content-Security-Policy: this origin's own scripts, styles and images only (no inline script;
# heatmaps and previews are blob:/data: images).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- I18N / static / media --------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploaded X-rays are never exposed under a public URL: only the
# authenticated image views read them (see diagnosis/views.py).
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = None

# Requests larger than this are refused before the upload is parsed.
PNEUMOWEB_MAX_UPLOAD_BYTES = env_int("PNEUMOWEB_MAX_UPLOAD_BYTES", limits.MAX_UPLOAD_BYTES)
PNEUMOWEB_MAX_IMAGE_PIXELS = env_int("PNEUMOWEB_MAX_IMAGE_PIXELS", limits.MAX_IMAGE_PIXELS)
PNEUMOWEB_MIN_IMAGE_SIDE = env_int("PNEUMOWEB_MIN_IMAGE_SIDE", limits.MIN_IMAGE_SIDE)
DATA_UPLOAD_MAX_MEMORY_SIZE = PNEUMOWEB_MAX_UPLOAD_BYTES + 1024 * 1024
# Several X-rays of one patient in one upload (page and POST /api/predict/batch/), each its own study.
PNEUMOWEB_MAX_BATCH_FILES = env_int("PNEUMOWEB_MAX_BATCH_FILES", 20)
# How long an Idempotency-Key on POST /api/predict/ (and /batch/) is remembered.
PNEUMOWEB_IDEMPOTENCY_TTL_HOURS = env_int("PNEUMOWEB_IDEMPOTENCY_TTL_HOURS", 24)
DATA_UPLOAD_MAX_NUMBER_FILES = PNEUMOWEB_MAX_BATCH_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Model ----------------------------------------------------------------
PNEUMOWEB_MODEL_PATH = Path(env("PNEUMOWEB_MODEL_PATH", limits.DEFAULT_WEIGHTS))
# Used only when no checkpoint exists at PNEUMOWEB_MODEL_PATH: the real
# architecture with seeded, untrained weights, labelled as such everywhere.
PNEUMOWEB_FALLBACK_PRESET = env("PNEUMOWEB_FALLBACK_PRESET", DEFAULT_PRESET)
PNEUMOWEB_DEVICE = env("PNEUMOWEB_DEVICE", "auto")
# Autocast of the worker's forward passes: auto = bf16 on CUDA, fp32 on a CPU; or fp32, bf16, fp16.
PNEUMOWEB_PRECISION = env_choice("PNEUMOWEB_PRECISION", "auto", limits.PRECISIONS)

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker = broker_folders(VAR_DIR)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker["queue"]),
        "data_folder_out": str(_broker["queue"]),
        "processed_folder": str(_broker["processed"]),
        "control_folder": str(_broker["control"]),
        "store_processed": False,
        # The transport polls its folder; kombu's default second would be most of an upload's wait.
        "polling_interval": env_float("PNEUMOWEB_FILESYSTEM_POLL_SECONDS", 0.05),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A message not acknowledged within this time is handed to another worker; it must outlast
        # the longest job (hard limit below). A lost worker's job comes back sooner through its lease.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900),
        # A broker that is down must fail a publish in seconds, not hang an upload: the job waits in
        # the database for the reconciler instead.
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
# One publish attempt; a failed one leaves the job queued in the database (diagnosis/jobs/dispatch.py).
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# Prediction state lives in the database, not in a Celery result backend.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Torch threads per worker pool process; 0: the cores divided by the pool's processes.
PNEUMOWEB_TORCH_THREADS = env_int("PNEUMOWEB_TORCH_THREADS", 0)
# Each pool process loads the model before it reports itself up (diagnosis/jobs/worker.py). Celery's
# default 4 s kills a child still loading it — on a busy CPU, a slow disk or a GPU's first use —
# and forks the next one to the same end, forever: no job would run again after a lost child.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_float("PNEUMOWEB_WORKER_START_TIMEOUT", 120.0)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "pneumoweb")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
PNEUMOWEB_TASK_SOFT_TIME_LIMIT = env_int("PNEUMOWEB_TASK_SOFT_TIME_LIMIT", 120)
PNEUMOWEB_TASK_HARD_TIME_LIMIT = env_int("PNEUMOWEB_TASK_HARD_TIME_LIMIT", 150)
# Recovery (diagnosis/jobs/dispatch.py, docs/OPERATIONS.md): a running job renews its lease every
# HEARTBEAT seconds; one not renewed for LEASE seconds lost its worker and is queued again. The
# periodic job requeue-and-resend runs every RECONCILE seconds (0 turns it off) and re-sends a queued job
# whose message went out more than RESEND_AFTER seconds ago (a broker that lost its data).
# Dynamic batching on the worker: a job takes up to BATCH_SIZE queued studies (waiting at most
# BATCH_WAIT_MS for them) through one forward pass; 1 runs each study alone.
PNEUMOWEB_BATCH_SIZE = env_int("PNEUMOWEB_BATCH_SIZE", 8)
PNEUMOWEB_BATCH_WAIT_MS = env_int("PNEUMOWEB_BATCH_WAIT_MS", 0)
PNEUMOWEB_HEARTBEAT_SECONDS = env_int("PNEUMOWEB_HEARTBEAT_SECONDS", 5)
# Monitoring: a population stability index of P(pneumonia) against validation above this is an alert
# (0.1–0.25 is usually read as a moderate shift, above 0.25 as a major one).
PNEUMOWEB_DRIFT_PSI_ALERT = env_float("PNEUMOWEB_DRIFT_PSI_ALERT", 0.25)
PNEUMOWEB_LEASE_SECONDS = env_int("PNEUMOWEB_LEASE_SECONDS", 30)
PNEUMOWEB_RECONCILE_SECONDS = env_int("PNEUMOWEB_RECONCILE_SECONDS", 10)
PNEUMOWEB_RESEND_AFTER_SECONDS = env_int("PNEUMOWEB_RESEND_AFTER_SECONDS", 60)
PNEUMOWEB_ORPHAN_GRACE_SECONDS = env_int("PNEUMOWEB_ORPHAN_GRACE_SECONDS", 3600)
# The other periodic jobs (core/periodic.py; `manage.py periodic` lists each job's last run), every
# interval in seconds, 0 turning a job off: files no row names and expired Idempotency-Keys are swept
# every SWEEP, the audit trail sealed every AUDIT_SEAL, the DICOM path's held pixels swept every
# PACS_SWEEP (its round of sending is PNEUMOWEB_PACS_TICK_SECONDS below).
PNEUMOWEB_SWEEP_SECONDS = env_int("PNEUMOWEB_SWEEP_SECONDS", 60)
PNEUMOWEB_AUDIT_SEAL_SECONDS = env_int("PNEUMOWEB_AUDIT_SEAL_SECONDS", 60)
PNEUMOWEB_PACS_SWEEP_SECONDS = env_int("PNEUMOWEB_PACS_SWEEP_SECONDS", 600)

# --- Audit trail seals (audit/seals.py; docs/OPERATIONS.md "Audit trail") -----------------------
# Entries older than the grace are sealed into a hash chain every PNEUMOWEB_AUDIT_SEAL_SECONDS by the
# periodic job seal-audit (or `manage.py seal_audit`), and each seal is appended to the file below, which is
# meant to be shipped to an append-only store: it is what shows a removed tail.
PNEUMOWEB_AUDIT_SEAL_FILE = Path(env("PNEUMOWEB_AUDIT_SEAL_FILE", VAR_DIR / "audit-seals.jsonl"))
PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS = env_int("PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS", 300)
# Audit entries name patients by keyed hashes (audit/pseudonyms.py). Keep the key with the secret
# key: a deployment restored elsewhere needs the same one to give a patient the same pseudonym.
PNEUMOWEB_PSEUDONYM_KEY = env("PNEUMOWEB_PSEUDONYM_KEY") or hashlib.sha256(
    f"pneumoweb-audit-pseudonyms:{SECRET_KEY}".encode()).hexdigest()
# Site calibration (diagnosis/site_points.py; docs/OPERATIONS.md "Site operating points"). A share of
# accepted studies is drawn at upload into the random review sample (0 turns it off). A refit point is
# refused with fewer confirmed patients of either class than MIN_PER_CLASS: at 50, one missed PNEUMONIA
# moves recall by 0.02, the resolution the pediatric floor (0.98) needs; and when the lower end of its
# recall interval lies more than MAX_SHORTFALL under the population's floor.
PNEUMOWEB_REVIEW_SAMPLE_SHARE = env_float("PNEUMOWEB_REVIEW_SAMPLE_SHARE", 0.05)
PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS = env_int("PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS", 50)
PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL = env_float("PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL", 0.05)
# Erasing a patient's data (diagnosis/erasure.py): with the two-person rule a second administrator
# approves each request, and each site operating point (diagnosis/site_points.py) too. The erasure log
# lives outside the database and its backups: a restore re-applies the erasures it lists.
PNEUMOWEB_ERASURE_TWO_PERSON = env_bool("PNEUMOWEB_ERASURE_TWO_PERSON", False)
# No default: the log must outlive this machine (keep it beside the backups, off it); unset, erasing is
# refused and diagnosis' system check warns.
PNEUMOWEB_ERASURE_LOG = Path(env("PNEUMOWEB_ERASURE_LOG")) if env("PNEUMOWEB_ERASURE_LOG") else None

# --- DICOM (pacs/: receiving from a PACS, sending results back; docs/OPERATIONS.md) ----------
# The listener (manage.py dicom_listener): its AE title and address, and the calling AE titles it
# accepts — any other is refused at association; with none configured the listener refuses to start.
PNEUMOWEB_DICOM_AE_TITLE = env("PNEUMOWEB_DICOM_AE_TITLE", "PNEUMOWEB")
PNEUMOWEB_DICOM_BIND = env("PNEUMOWEB_DICOM_BIND", "127.0.0.1")
PNEUMOWEB_DICOM_PORT = env_int("PNEUMOWEB_DICOM_PORT", 11112)
PNEUMOWEB_DICOM_ALLOWED_AETS = env_list("PNEUMOWEB_DICOM_ALLOWED_AETS")
# The account that owns patients received over DICOM, and the group whose clinicians see them.
PNEUMOWEB_PACS_ACCOUNT = env("PNEUMOWEB_PACS_ACCOUNT", "pacs")
PNEUMOWEB_PACS_READERS_GROUP = env("PNEUMOWEB_PACS_READERS_GROUP", "pacs-reader")
# A study is assessed once no instance of it arrived for this long (modalities send a study's
# images one association at a time, seconds apart).
PNEUMOWEB_PACS_QUIET_SECONDS = env_int("PNEUMOWEB_PACS_QUIET_SECONDS", 30)
# How often the periodic job pacs-round closes quiet studies and sends results back.
PNEUMOWEB_PACS_TICK_SECONDS = env_float("PNEUMOWEB_PACS_TICK_SECONDS", 2.0)
# Sending results: attempts before an export is marked failed, and the first back-off (doubled each time).
PNEUMOWEB_DICOM_EXPORT_ATTEMPTS = env_int("PNEUMOWEB_DICOM_EXPORT_ATTEMPTS", 6)
PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS = env_float("PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS", 30.0)
PNEUMOWEB_DICOM_SEND_TIMEOUT_SECONDS = env_float("PNEUMOWEB_DICOM_SEND_TIMEOUT_SECONDS", 30.0)

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "predict": env("PNEUMOWEB_PREDICT_RATE", "60/min"),
        "auth": env("PNEUMOWEB_AUTH_RATE", "30/min"),  # token requests per client address
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PneumoWeb API",
    "DESCRIPTION": "Chest X-ray pneumonia prediction: patients, studies and asynchronous predictions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pneumoweb.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "LabelEnum": "diagnosis.models.Prediction.Label",
        "SexEnum": "diagnosis.models.Patient.Sex",
        "TokenRefusalCodeEnum": "accounts.api.OTP_REFUSAL_CODES",
    },
}

# Nothing is open by default: list the browser origins allowed to call the API.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line with its time, level and logger: an operator reading the DICOM listener's or a worker's
    # output needs when (pynetdicom's own lines had no time).
    "formatters": {"timed": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "timed"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- API tokens (django-rest-knox): only a hash is stored; each token expires ---------------------
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_int("PNEUMOWEB_TOKEN_TTL_HOURS", 24 * 7)),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
# A PACS sender's tokens (accounts/sender_tokens.py) live in the PACS's configuration: a year, and
# monitoring warns this many days before the newest one ends.
PNEUMOWEB_SENDER_TOKEN_TTL_DAYS = env_int("PNEUMOWEB_SENDER_TOKEN_TTL_DAYS", 365)
PNEUMOWEB_SENDER_TOKEN_WARN_DAYS = env_int("PNEUMOWEB_SENDER_TOKEN_WARN_DAYS", 14)

# Last: every PNEUMOWEB_* variable above has been read; one set that none of them names is reported
# by the system checks (`manage.py check`, migrate, bin/run): core/checks.py warns, naming the closest
# known name.
PNEUMOWEB_UNKNOWN_ENVIRONMENT = unknown_names()
