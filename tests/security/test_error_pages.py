"""DEBUG is off unless asked for (run.sh too); error pages are the site's own and give nothing away."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views import defaults

ROOT = Path(__file__).resolve().parents[2]
DEBUG_PAGE_MARKERS = ("URLconf", "urlpatterns", "Traceback", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")


def _run_sh_debug(**env) -> str:
    """The DEBUG that run.sh exports, given ``env`` (its own export lines, run by bash)."""
    exports = [line for line in (ROOT / "run.sh").read_text().splitlines() if line.startswith("export DEBUG=")]
    assert exports, "run.sh must set DEBUG explicitly"
    environ = {k: v for k, v in os.environ.items() if k != "DEBUG"} | env
    script = "\n".join([*exports, 'printf %s "$DEBUG"'])
    return subprocess.run(["bash", "-c", script], env=environ, capture_output=True, text=True, check=True).stdout


def test_run_sh_leaves_debug_off_unless_the_user_turns_it_on():
    assert _run_sh_debug() == "0"
    assert _run_sh_debug(DEBUG="1") == "1"


def _assert_nothing_given_away(body: str):
    for marker in DEBUG_PAGE_MARKERS:
        assert marker not in body, marker


@pytest.mark.django_db
def test_404_is_the_sites_page_for_signed_in_and_anonymous_users(doctor):
    anonymous = Client().get("/static/no-such-file.css")
    assert anonymous.status_code == 404
    _assert_nothing_given_away(anonymous.content.decode())
    client = Client()
    client.force_login(doctor)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert [t.name for t in response.templates][:2] == ["404.html", "base.html"]
    body = response.content.decode()
    assert "Not found" in body and reverse("worklist") in body  # the site's page, with its navigation
    _assert_nothing_given_away(body)


@pytest.mark.django_db
def test_403_is_the_sites_page(technician):
    client = Client()
    client.force_login(technician)
    response = client.get(reverse("worklist"))
    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    assert "Not allowed" in response.content.decode()


def test_500_page_renders_without_a_request_context():
    response = defaults.server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Server error" in response.content.decode()


@pytest.mark.django_db
def test_an_error_in_a_page_shows_the_500_page_without_details(doctor, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr("cases.views.selectors.sample_list", broken)
    client = Client(raise_request_exception=False)
    client.force_login(doctor)
    response = client.get(reverse("home"))
    assert response.status_code == 500
    body = response.content.decode()
    assert "Server error" in body and "secret detail" not in body
    _assert_nothing_given_away(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(host: str, port: int, path: str) -> tuple[int, dict, str]:
    connection = HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        connection.close()


@pytest.mark.slow
def test_the_server_as_run_sh_starts_it_serves_static_files_and_no_debug_pages(tmp_path):
    """runserver on 127.0.0.1 with run.sh's DEBUG and collectstatic, as run.sh does it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE", "ALLOWED_HOSTS")}
    environ.update(
        DEBUG=_run_sh_debug(), STATIC_ROOT=str(tmp_path / "static"), LOG_LEVEL="WARNING",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", HV_BROKER_DIR=str(tmp_path / "broker"),
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=environ, check=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=environ,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                status, _, _ = _get("127.0.0.1", port, "/healthz")
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200
        status, headers, css = _get("127.0.0.1", port, "/static/css/app.css")
        assert status == 200 and "text/css" in headers["Content-Type"] and css
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, _, js = _get("127.0.0.1", port, "/static/js/review.js")
        assert status == 200 and js
        for host in ("localhost", "127.0.0.1"):
            status, _, _ = _get(host, port, "/healthz")
            assert status == 200, host
        status, headers, body = _get("127.0.0.1", port, "/static/no-such-file.css")
        assert status == 404
        _assert_nothing_given_away(body)
        assert "Not found" in body
    finally:
        server.terminate()
        server.wait(timeout=30)
