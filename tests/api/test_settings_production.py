"""hematovision.settings_production passes Django's deployment checklist (in a subprocess)."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(settings_module: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "HV_PRODUCTION", "DJANGO_SETTINGS_MODULE")}
    environ.update({"DJANGO_SETTINGS_MODULE": settings_module, "LOG_LEVEL": "WARNING", **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
def test_production_settings_pass_check_deploy():
    result = _check_deploy(
        "hematovision.settings_production",
        SECRET_KEY=secrets.token_urlsafe(64)[:50],
        ALLOWED_HOSTS="lab.example.org",
        DEBUG="1",  # forced off whatever the environment says
        REDIS_URL="redis://127.0.0.1:6379/0",  # configures the shared cache (no connection is made)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
def test_development_settings_do_not_pass_it():
    """The control: the same check does find problems in the development settings."""
    result = _check_deploy("hematovision.settings", SECRET_KEY="", ALLOWED_HOSTS="localhost")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": "", "ALLOWED_HOSTS": "lab.example.org"}, "SECRET_KEY"),
        ({"SECRET_KEY": "too-short", "ALLOWED_HOSTS": "lab.example.org"}, "SECRET_KEY"),
        ({"SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
    ],
)
def test_production_settings_refuse_to_start_without_secrets(env, message):
    result = _check_deploy("hematovision.settings_production", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_values_are_forced():
    import importlib

    environ = {"SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "lab.example.org,testserver", "DEBUG": "1"}
    saved = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)
    try:
        prod = importlib.reload(importlib.import_module("hematovision.settings_production"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert prod.DEBUG is False
    assert prod.ALLOWED_HOSTS == ["lab.example.org"]
    assert prod.SESSION_COOKIE_SECURE and prod.CSRF_COOKIE_SECURE and prod.SECURE_SSL_REDIRECT
    assert prod.SECURE_HSTS_SECONDS >= 31536000
    assert prod.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] == ["rest_framework.renderers.JSONRenderer"]
