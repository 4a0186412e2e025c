"""Issue 13, item 10 outside the review page: error pages that say what happened, labelled
inputs, AA contrast of the colours, live regions on the upload progress, lists that fit a phone."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import reverse

from accounts.roles import Role

from ..factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    """A parsed element: just enough of a DOM to look for labels and attributes."""

    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], []

    def __getitem__(self, key):
        return self.attrs[key]

    def get(self, key, default=None):
        return self.attrs.get(key, default)

    def walk(self):
        for child in self.children:
            yield child
            yield from child.walk()

    def find_all(self, tags=None, class_=None, **attrs):
        tags = [tags] if isinstance(tags, str) else tags
        return [
            n for n in self.walk()
            if (tags is None or n.tag in tags)
            and (class_ is None or class_ in (n.get("class") or "").split())
            and all(n.get(k) == v for k, v in (attrs.get("attrs") or attrs).items())
        ]

    def find(self, tags=None, **attrs):
        found = self.find_all(tags, **attrs)
        return found[0] if found else None

    def find_parent(self, tag):
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        return node

    def get_text(self, sep=" ", strip=True):
        parts = [*self.text, *(c.get_text(sep) for c in self.children)]
        return sep.join(p.strip() for p in parts if p.strip())

    def __str__(self):
        return f"<{self.tag} {self.attrs}>"


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = self.current = Node("document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.current)
        node.attrs["class"] = node.attrs.get("class") or ""
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text.append(data)


def BeautifulSoup(html: bytes, _parser: str) -> Node:  # noqa: N802 - reads like the library it stands in for
    builder = _Builder()
    builder.feed(html.decode())
    return builder.root


def test_403_says_what_happened_who_is_signed_in_and_links_home(client, technician):
    client.force_login(technician)
    response = client.get(reverse("audit-trail"))
    assert response.status_code == 403
    page = BeautifulSoup(response.content, "html.parser")
    main = page.find("main").get_text(" ", strip=True)
    assert "Not allowed" in main and "does not give access to this page" in main
    assert technician.get_printed_name() in main and "technician" in main
    assert page.find("main").find("a", href=reverse("home"))


@pytest.mark.parametrize("debug", [False, True])
def test_404_is_the_sites_page_whatever_debug_says(client, settings, doctor, debug):
    settings.DEBUG = debug
    client.force_login(doctor)
    for url in ("/no-such-page/", reverse("sample-detail", kwargs={"pk": 999_999}), "/samples/1/nothing"):
        response = client.get(url)
        assert response.status_code == 404, url
        body = response.content.decode()
        assert "Not found" in body and reverse("home") in body, url
        for marker in ("URLconf", "urlpatterns", "Traceback", "DEBUG = True"):
            assert marker not in body, (url, marker)


def test_api_404_stays_json_with_debug_on(client, settings, doctor):
    settings.DEBUG = True
    client.force_login(doctor)
    response = client.get("/api/v1/samples/999999/")
    assert response.status_code == 404 and response["Content-Type"].startswith("application/json")


def _inputs_without_label(html: bytes) -> list[str]:
    page = BeautifulSoup(html, "html.parser")
    missing = []
    for field in page.find("main").find_all(["input", "select", "textarea"]):
        if field.get("type") in ("hidden", "submit", "button"):
            continue
        named = field.get("aria-label") or field.get("aria-labelledby") or field.find_parent("label")
        if not named and field.get("id"):
            named = page.find("label", attrs={"for": field["id"]})
        if not named:
            missing.append(str(field)[:120])
    return missing


def test_every_input_of_the_list_and_form_pages_has_a_label(client, technician, doctor, admin_user, sample):
    pages = {
        technician: ["patient-list", "sample-list", "patient-create",
                     ("sample-create", {"patient_pk": sample.patient_id}),
                     ("sample-edit", {"pk": sample.pk}), ("sample-cancel", {"pk": sample.pk}),
                     ("sample-detail", {"pk": sample.pk})],
        doctor: ["worklist"],
        admin_user: ["audit-trail"],
    }
    for user, names in pages.items():
        client.force_login(user)
        for name in names:
            name, kwargs = name if isinstance(name, tuple) else (name, {})
            response = client.get(reverse(name, kwargs=kwargs))
            assert response.status_code == 200, name
            assert not _inputs_without_label(response.content), (name, _inputs_without_label(response.content))


def test_upload_progress_is_announced_to_screen_readers(client, technician, sample):
    client.force_login(technician)
    page = BeautifulSoup(client.get(reverse("sample-detail", kwargs={"pk": sample.pk})).content, "html.parser")
    assert page.find(id="progress-text")["aria-live"] == "polite"
    assert page.find(id="sample-status")["aria-live"] == "polite"
    assert page.find("progress").get("aria-label")


def test_lists_stack_into_cards_on_a_phone(client, doctor, sample):
    """Every cell of the list tables is labelled for the stacked (phone) layout of app.css."""
    client.force_login(doctor)
    for name in ("home", "sample-list", "patient-list", "worklist"):
        page = BeautifulSoup(client.get(reverse(name)).content, "html.parser")
        for table in page.find_all("table", class_="grid"):
            assert "stack" in table["class"].split(), name
            for cell in table.find("tbody").find_all("td"):
                assert cell.get("data-label") or cell.get("colspan"), (name, str(cell)[:80])
    css = (ROOT / "static/css/app.css").read_text()
    assert "table.grid.stack td[data-label]::before" in css


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))

    def linear(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_colours_meet_wcag_aa():
    css = (ROOT / "static/css/app.css").read_text()
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", css.split("}")[0]))
    backgrounds = ["#ffffff", colours["bg"], "#e8ecf0", "#e8f0fb"]
    for background in backgrounds:
        assert _contrast(colours["muted"], background) >= 4.5, background  # grey text
        assert _contrast(colours["ink"], background) >= 4.5, background
    assert _contrast(colours["field-border"], "#ffffff") >= 3  # input borders (UI components)
    assert "border:1px solid var(--field-border)" in css


@pytest.mark.parametrize("role", [Role.TECHNICIAN, Role.DOCTOR, Role.ADMIN])
def test_sample_history_and_labels_are_for_clinical_staff_only(client, sample, role):
    client.logout()
    url = reverse("sample-history", kwargs={"pk": sample.pk})
    assert client.get(url).status_code == 302
    client.force_login(UserFactory(role=role))
    assert client.get(url).status_code == 200
    client.force_login(UserFactory())
    assert client.get(url).status_code == 403
