"""Production settings: ``DJANGO_SETTINGS_MODULE=hematovision.settings_production``.

Everything from ``hematovision.settings`` (read from the environment), with production
semantics forced whatever the environment or a stray ``.env`` says: DEBUG off, the
HV_PRODUCTION hardening (secure cookies, HSTS, SSL redirect behind a TLS proxy), and no
development fallbacks: SECRET_KEY and ALLOWED_HOSTS must come from the environment.
``manage.py check --deploy --fail-level WARNING`` passes with these settings
(tests/api/test_settings_production.py runs it).
"""
from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F403
from .settings import REDIS_URL, REST_FRAMEWORK, STORAGES, env

DEBUG = False
PRODUCTION = True

# Secrets and hosts: no defaults in production.
SECRET_KEY = env.str("SECRET_KEY", default="")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith(("insecure-", "django-insecure")):
    raise ImproperlyConfigured(
        "Set SECRET_KEY in the environment to a random value of at least 50 characters "
        '(e.g. python -c "import secrets; print(secrets.token_urlsafe(50))").'
    )
ALLOWED_HOSTS = [h for h in env.list("ALLOWED_HOSTS", default=[]) if h not in ("testserver", "*")]
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set ALLOWED_HOSTS in the environment, e.g. ALLOWED_HOSTS=lab.example.org.")

# HTTPS only. The TLS-terminating proxy must set X-Forwarded-Proto (and strip it from clients).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load-balancer probes over plain HTTP inside the network
SECURE_HSTS_SECONDS = max(env.int("SECURE_HSTS_SECONDS", default=31536000), 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_SAMESITE = "Lax"

# Hashed, compressed static files served by WhiteNoise.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# API rate-limit counters (and any other cache use) shared by every web process when Redis is there;
# the default per-process memory cache would multiply the allowed rate by the number of processes.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("HV_CACHE_URL", default=REDIS_URL),
            "KEY_PREFIX": "hv",
        }
    }

# The API never offers the browsable HTML renderer in production.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}
