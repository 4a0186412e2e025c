"""HematoVision settings, read from the environment (django-environ).

Defaults run everything on one machine: SQLite and kombu's SQLAlchemy broker on a SQLite file.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL / CELERY_BROKER_URL, SECRET_KEY,
ALLOWED_HOSTS, DEBUG=0 and HV_PRODUCTION=1 (secure cookies, HSTS, SSL redirect).
"""
import os
from datetime import timedelta
from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
PRODUCTION = env.bool("HV_PRODUCTION", default=False)
SECRET_KEY = env(
    "SECRET_KEY",
    default="insecure-development-key-change-me-" + "x" * 24,
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

LAB_NAME = env("HV_LAB_NAME", default="HematoVision Demo Laboratory")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_filters",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "audit",
    "cases",
    "classifier",
    "review",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cases.middleware.UploadRequestLimitMiddleware",  # before anything reads a request body
    "audit.middleware.AuditContextMiddleware",
    "cases.middleware.ServiceErrorMiddleware",
    "accounts.middleware.LoginRequiredEverywhereMiddleware",
    "accounts.middleware.TwoFactorRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hematovision.urls"
WSGI_APPLICATION = "hematovision.wsgi.application"

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
                "accounts.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that worker processes started by the tests share it.
    # One file per test process, so that concurrent test runs never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": env("HV_TEST_SQLITE", default=str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3"))
    }
    # Several processes (web, worker, beat) share the file: wait for locks, WAL mode.
    # IMMEDIATE transactions take the write lock up front and wait for it, instead of failing
    # with "database is locked" when two requests read and then write at the same time.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Automatic logoff: the session expires after this many idle seconds (renewed on each request).
SESSION_COOKIE_AGE = env.int("HV_SESSION_IDLE_SECONDS", default=15 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True

# Login lockout (django-axes with accounts.lockout.LockoutHandler). Failed sign-ins (wrong password,
# wrong one-time code, wrong signing password) are counted per username and, separately, per client
# IP: a username is locked after HV_LOGIN_FAILURE_LIMIT failures from anywhere, an IP after
# HV_LOGIN_IP_FAILURE_LIMIT failures for any usernames (higher: a lab behind one proxy/NAT shares
# it). A successful sign-in clears only that username's failures.
AXES_HANDLER = "accounts.lockout.LockoutHandler"
AXES_FAILURE_LIMIT = env.int("HV_LOGIN_FAILURE_LIMIT", default=5)
HV_LOGIN_IP_FAILURE_LIMIT = env.int("HV_LOGIN_IP_FAILURE_LIMIT", default=50)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("HV_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True

# Two-factor sign-in (django-otp: TOTP authenticator + single-use recovery codes). Any user may
# enrol; with HV_REQUIRE_2FA=1 doctors and admins must, before any other page.
HV_REQUIRE_2FA = env.bool("HV_REQUIRE_2FA", default=False)
HV_2FA_STEP_SECONDS = env.int("HV_2FA_STEP_SECONDS", default=300)  # time to enter the code after the password
OTP_TOTP_ISSUER = LAB_NAME
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env("MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Media is never served as static: images are streamed by a view that checks the user.
MEDIA_URL = "/media-not-public/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG and PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Upload limits (validated by cases.services.images, not by the file extension).
HV_MAX_UPLOAD_BYTES = env.int("HV_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
HV_MAX_IMAGE_PIXELS = env.int("HV_MAX_IMAGE_PIXELS", default=40_000_000)
HV_MAX_FILES_PER_UPLOAD = env.int("HV_MAX_FILES_PER_UPLOAD", default=500)
DATA_UPLOAD_MAX_NUMBER_FILES = HV_MAX_FILES_PER_UPLOAD
# One request's body (all its files together): over it, cases.middleware.UploadRequestLimitMiddleware
# answers 413 before anything is read. DATA_UPLOAD_MAX_MEMORY_SIZE does not count files.
HV_MAX_UPLOAD_REQUEST_BYTES = env.int("HV_MAX_UPLOAD_REQUEST_BYTES", default=200 * 1024 * 1024)
# Uploaded files stream to temporary files on disk, never into the web process's memory; the
# services then read one file at a time.
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Celery: Redis in production/CI; by default kombu's SQLAlchemy transport on a SQLite file
# (no server to install; BEGIN IMMEDIATE makes it safe for several worker processes).
REDIS_URL = env("REDIS_URL", default="")
BROKER_DIR = Path(env("HV_BROKER_DIR", default=str(VAR_DIR / "broker")))
BROKER_DIR.mkdir(parents=True, exist_ok=True)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or f"sqla+sqlite:///{BROKER_DIR / 'broker.sqlite3'}")
# The SQLite broker polls its table; the default (1 s) would cap each worker at ~1 task/s.
# (Set on the transport class in hematovision/celery.py: this transport hands every transport
# option to SQLAlchemy's create_engine, which refuses polling_interval.)
HV_BROKER_POLL_S = env.float("HV_BROKER_POLL_S", default=0.1)
CELERY_BROKER_TRANSPORT_OPTIONS = {} if CELERY_BROKER_URL.startswith("sqla+") else {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Three queues: classification ("celery"), the Grad-CAM second pass ("heatmaps") and candidate
# training ("training", minutes of CPU per task). A worker started without -Q consumes all of them;
# run.sh starts one worker for `-Q celery,heatmaps` and a separate one for `-Q training`, so that
# classification never waits behind a training run.
CELERY_TASK_QUEUES = (Queue("celery"), Queue("heatmaps"), Queue("training"))
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "classifier.compute_heatmaps": {"queue": "heatmaps"},
    "classifier.train_candidate": {"queue": "training"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response (django-csp): the pages use only same-origin static
# JS and CSS, never inline script, inline style or event-handler attributes. Downloads of patient
# data set a stricter one of their own (cases.downloads).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CSRF_COOKIE_HTTPONLY = False
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Classification: batch size per task, when the sweeper re-enqueues stuck images, retries.
HV_CLASSIFY_BATCH_SIZE = env.int("HV_CLASSIFY_BATCH_SIZE", default=8)
HV_SWEEP_QUEUED_AFTER_S = env.int("HV_SWEEP_QUEUED_AFTER_S", default=120)
HV_SWEEP_CLASSIFYING_AFTER_S = env.int("HV_SWEEP_CLASSIFYING_AFTER_S", default=300)
HV_SWEEP_INTERVAL_S = env.float("HV_SWEEP_INTERVAL_S", default=60.0)
HV_MAX_CLASSIFY_ATTEMPTS = env.int("HV_MAX_CLASSIFY_ATTEMPTS", default=5)
# Candidate models fitted to this lab (classifier.adaptation): the floor of doctor-confirmed cells per
# class before a run may start, the share of signed samples held out (whole) for the comparison,
# the recipe's epochs and the time a run may take, and where candidate files go (MEDIA_ROOT/models).
HV_ADAPT_MIN_CELLS_PER_CLASS = env.int("HV_ADAPT_MIN_CELLS_PER_CLASS", default=50)
HV_ADAPT_HOLDOUT_FRACTION = env.float("HV_ADAPT_HOLDOUT_FRACTION", default=0.2)
HV_ADAPT_EPOCHS = env.int("HV_ADAPT_EPOCHS", default=20)
HV_ADAPT_TIME_BUDGET_S = env.float("HV_ADAPT_TIME_BUDGET_S", default=15 * 60)
HV_CANDIDATE_MODELS_DIR = env("HV_CANDIDATE_MODELS_DIR", default="")
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-images": {"task": "classifier.sweep_stuck_images", "schedule": HV_SWEEP_INTERVAL_S},
}

# Sign-off: the fewest white cells (excluded ones not counted) a differential must rest on; below it the
# doctor signs only with a reason, which is printed on the report. Labs count 100 (or 200) cells.
HV_MIN_CELLS_FOR_SIGNOFF = env.int("HV_MIN_CELLS_FOR_SIGNOFF", default=100)

# API tokens stop working this long after they were issued (a work shift by default).
HV_API_TOKEN_TTL_HOURS = env.float("HV_API_TOKEN_TTL_HOURS", default=12.0)

# REST API (api/): session + token auth, role permissions per endpoint, OpenAPI by drf-spectacular.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ExpiringTokenAuthentication",  # first, so anonymous callers get 401
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    # DRF's JSON parser answers JSON nested too deeply with a 500; this one with a 400.
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {"api-login": "10/min", "api-upload": "60/min", "api-sign": "10/min"},
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HematoVision API",
    "DESCRIPTION": "AI-assisted white-blood-cell review: patients, samples, images, predictions, reviews, sign-off.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "CellClassEnum": "classifier.models.CELL_CLASSES",
        "SampleStatusEnum": "cases.models.SampleStatus",
        "ImageStatusEnum": "cases.models.ImageStatus",
        "FieldStatusEnum": "cases.models.FieldStatus",
        "CellOriginEnum": "cases.models.CellOrigin",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
