"""A strict Content-Security-Policy on every response, and pages that work under it (no inline script or style)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

TEMPLATE_DIRS = [Path(settings.BASE_DIR) / "templates", *Path(settings.BASE_DIR).glob("*/templates")]
# What a policy without 'unsafe-inline' blocks: inline <script> and <style>, style="" and on*="" attributes,
# javascript: URLs.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.IGNORECASE
)


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


def _assert_strict(response):
    policy = _policy(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]


@pytest.fixture
def doctor_client(doctor):
    client = Client()
    client.force_login(doctor)
    return client


def test_anonymous_responses_carry_the_policy():
    client = Client()
    for url, status in (
        (reverse("login"), 200), (reverse("home"), 302), ("/healthz", 200), ("/api/v1/patients/", 401),
        ("/api/v1/no-such-thing/", 404),
    ):
        response = client.get(url)
        assert response.status_code == status, url
        _assert_strict(response)


def test_signed_in_pages_and_errors_carry_the_policy(doctor_client, technician):
    for url, status in (
        (reverse("home"), 200), (reverse("sample-list"), 200), (reverse("worklist"), 200),
        ("/no-such-page/", 404), (reverse("audit-trail"), 403), (reverse("api:worklist"), 200),
    ):
        response = doctor_client.get(url)
        assert response.status_code == status, url
        _assert_strict(response)


@pytest.mark.parametrize(
    "template", sorted(p for d in TEMPLATE_DIRS for p in d.rglob("*.html")), ids=lambda p: p.name
)
def test_templates_have_no_inline_script_style_or_handlers(template):
    found = INLINE.findall(template.read_text())
    assert not found, f"{template}: {found} would be blocked by the Content-Security-Policy"


def test_api_docs_load_their_start_up_script_from_a_url(doctor_client):
    page = doctor_client.get(reverse("api:docs"))
    assert page.status_code == 200
    html = page.content.decode()
    assert not INLINE.findall(html), INLINE.findall(html)
    script = re.search(r'<script src="([^"]*script=[^"]*)"', html).group(1).replace("&amp;", "&")
    response = doctor_client.get(script)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in response.content
