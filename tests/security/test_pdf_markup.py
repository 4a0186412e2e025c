"""User text in the PDF report is printed as typed, never read as ReportLab markup (<img>, <a>, <i>)."""
from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from review import services as reviews
from review.reports import render_pdf

from ..api import images as img
from ..api.conftest import token_client
from ..api.reviewing import AI
from ..factories import PASSWORD, make_classified_sample

pytestmark = pytest.mark.django_db

# An unclosed tag (the signed PDF failed to build), an image from the server's disk (it was embedded),
# and a URL (the server fetched it while building the PDF).
FILE_NAME = "smear<i>.jpeg"
DISK_IMAGE = f'<img src="{img.real_cell(0)}" width="100" height="100"/>'
URL_IMAGE = '<img src="http://127.0.0.1:9/pixel.png"/> see <a href="http://127.0.0.1:9/">http://127.0.0.1:9/</a>'


@pytest.fixture
def hostile_signed(technician, doctor):
    sample = make_classified_sample(
        technician=technician, files=[(FILE_NAME, img.png(0)), ("cell1.png", img.png(1))], ai_classes=AI[:2],
    )
    first, second = sample.images.order_by("pk")
    reviews.cell_review(actor=doctor, image=first, final_class=AI[0], comment=DISK_IMAGE)
    reviews.cell_review(actor=doctor, image=second, final_class=AI[1])
    reviews.sample_comment_set(actor=doctor, sample=sample, comment=URL_IMAGE)
    signature = reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    sample.refresh_from_db()
    return sample, signature


def _text_and_images(pdf: bytes) -> tuple[str, int]:
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    return text, sum(len(page.images) for page in reader.pages)


def _assert_printed_as_typed(pdf: bytes):
    text, images = _text_and_images(pdf)
    assert images == 0  # nothing embedded from the disk or the network
    for literal in (f"Cell {FILE_NAME}: {DISK_IMAGE}", URL_IMAGE):
        assert " ".join(literal.split()) in text, literal


def test_report_prints_markup_in_file_names_and_comments_as_text(hostile_signed, monkeypatch):
    import urllib.request

    def no_fetch(*args, **kwargs):
        raise AssertionError("the server fetched a URL while building the PDF")

    monkeypatch.setattr(urllib.request, "urlopen", no_fetch)
    sample, signature = hostile_signed
    _assert_printed_as_typed(render_pdf(sample=sample, signature=signature))


def test_the_page_and_the_api_serve_that_report(hostile_signed, doctor):
    sample, _ = hostile_signed
    page = Client()
    page.force_login(doctor)
    response = page.get(reverse("sample-report-pdf", args=[sample.pk]))
    assert response.status_code == 200
    _assert_printed_as_typed(response.content)
    response = token_client(doctor).get(reverse("api:sample-report-pdf", args=[sample.pk]))
    assert response.status_code == 200
    _assert_printed_as_typed(response.content)


def test_an_amendment_reason_is_printed_as_typed(hostile_signed, doctor):
    sample, _ = hostile_signed
    reviews.sample_amend(actor=doctor, sample=sample, reason=f"Fix {FILE_NAME} {DISK_IMAGE}")
    amended = reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    text, images = _text_and_images(render_pdf(sample=sample, signature=amended))
    assert images == 0
    assert " ".join(f"AMENDED. Reason: Fix {FILE_NAME} {DISK_IMAGE}".split()) in text
