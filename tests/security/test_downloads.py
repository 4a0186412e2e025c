"""Downloads of patient data (images, heatmaps, PDF, FHIR): typed by their content, never run by a browser,
never cached, audited, and answered alike by the pages and the API (one helper, cases.downloads)."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from api import review_views as api_review_views
from api import views as api_views
from audit.models import AuditEvent
from cases import views
from cases.downloads import DOWNLOAD_CSP
from cases.services import images_upload
from cases.validation import ACCEPTED_FORMATS, FORMAT_EXTENSIONS, FORMAT_MEDIA_TYPES
from review import views as review_views

from ..api import images as img
from ..api.conftest import token_client
from ..api.reviewing import signed_sample
from .hostile_files import png_with_script

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(doctor):
    client = Client()
    client.force_login(doctor)
    return client


@pytest.fixture
def api(doctor):
    return token_client(doctor)


def _upload(technician, sample, name: str, data: bytes):
    result = images_upload(actor=technician, sample=sample, files=[(name, data)])
    assert not result.rejected, result.rejected
    return result.accepted[0]


def _assert_served_as_png(response, image):
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="cell-{image.pk}.png"'
    assert response["Content-Security-Policy"] == DOWNLOAD_CSP
    assert b"".join(response.streaming_content) == image.file.open("rb").read()


@pytest.mark.parametrize("name", ["cell_0042.html", "cell_0042.svg", "cell.HTM", "cell.xhtml"])
def test_image_named_like_a_web_page_is_stored_and_served_as_the_png_it_is(
    name, technician, sample, page, api
):
    image = _upload(technician, sample, name, png_with_script())
    assert image.file.name.endswith(".png")
    assert Path(image.file.name).suffix == ".png"
    assert image.original_filename == name  # still shown to people, never used to serve the file
    _assert_served_as_png(page.get(reverse("image-file", args=[image.pk])), image)
    _assert_served_as_png(api.get(reverse("api:image-file", args=[image.pk])), image)


def test_a_file_stored_under_an_html_name_before_the_fix_is_still_served_as_png(technician, sample, page, api):
    image = _upload(technician, sample, "a.png", png_with_script())
    storage = image.file.storage
    legacy = storage.save("cells/legacy/cell_0042.html", ContentFile(png_with_script()))
    type(image).objects.filter(pk=image.pk).update(file=legacy)
    image.refresh_from_db()
    _assert_served_as_png(page.get(reverse("image-file", args=[image.pk])), image)
    _assert_served_as_png(api.get(reverse("api:image-file", args=[image.pk])), image)


def test_every_accepted_format_has_a_file_extension_and_a_media_type():
    assert set(FORMAT_EXTENSIONS) == ACCEPTED_FORMATS
    assert set(FORMAT_MEDIA_TYPES) == ACCEPTED_FORMATS
    assert all(t.startswith("image/") for t in FORMAT_MEDIA_TYPES.values())


@pytest.fixture
def signed(technician, doctor):
    """A signed sample whose first cell has a Grad-CAM heatmap."""
    sample = signed_sample(technician, doctor, cells=2)
    image = sample.images.order_by("pk").first()
    prediction = image.predictions.get()
    prediction.heatmap.save("h.png", ContentFile(img.png(3)), save=True)
    return {"sample": sample, "image": image, "prediction": prediction}


# (what, page URL name, API URL name, the object each URL takes, the audited object, content type, disposition)
DOWNLOADS = [
    ("image", "image-file", "api:image-file", "image", "image", "image/png", "inline"),
    ("heatmap", "image-heatmap", "api:prediction-heatmap", ("image", "prediction"), "prediction", "image/png",
     "inline"),
    ("pdf", "sample-report-pdf", "api:sample-report-pdf", "sample", "sample", "application/pdf", "attachment"),
    ("fhir", "sample-fhir", "api:sample-fhir", "sample", "sample", "application/fhir+json", "attachment"),
]


def _urls(row, objects):
    _, page_name, api_name, arg, *_ = row
    page_arg, api_arg = arg if isinstance(arg, tuple) else (arg, arg)
    return reverse(page_name, args=[objects[page_arg].pk]), reverse(api_name, args=[objects[api_arg].pk])


def _downloads_of(obj) -> int:
    return AuditEvent.objects.filter(
        action="download", object_type=obj._meta.label_lower, object_id=str(obj.pk)
    ).count()


@pytest.mark.parametrize("row", DOWNLOADS, ids=[r[0] for r in DOWNLOADS])
def test_pages_and_api_answer_a_download_alike_and_audit_each(row, signed, page, api, doctor):
    what, *_, audited, content_type, disposition = row
    subject = signed[audited]
    responses = []
    for client, url in zip((page, api), _urls(row, signed), strict=True):
        before = _downloads_of(subject)
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:200])
        assert _downloads_of(subject) == before + 1, f"{url}: no audit row"
        event = AuditEvent.objects.filter(action="download").latest("pk")
        assert event.actor_id == doctor.pk
        responses.append(response)
    for response in responses:
        assert response["Content-Type"] == content_type
        assert response["Cache-Control"] == "private, no-store"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"] == DOWNLOAD_CSP
        assert response["Content-Disposition"].startswith(f"{disposition}; filename=")
    page_response, api_response = responses
    for header in ("Content-Type", "Content-Disposition", "Cache-Control", "Content-Security-Policy"):
        assert page_response[header] == api_response[header], header


@pytest.mark.parametrize("row", DOWNLOADS[:2], ids=[r[0] for r in DOWNLOADS[:2]])
def test_a_file_missing_from_storage_is_404_in_pages_and_api_and_not_audited(row, signed, page, api):
    what, *_, audited, _, _ = row
    fieldfile = signed["image"].file if what == "image" else signed["prediction"].heatmap
    Path(fieldfile.path).unlink()
    before = AuditEvent.objects.filter(action="download").count()
    page_url, api_url = _urls(row, signed)
    assert page.get(page_url).status_code == 404
    response = api.get(api_url)
    assert response.status_code == 404
    assert response.json() == {"detail": "The file is missing from storage."}
    assert AuditEvent.objects.filter(action="download").count() == before


@pytest.mark.parametrize("module", [views, review_views, api_views, api_review_views])
def test_no_view_builds_a_download_response_itself(module):
    """New downloads go through cases.downloads, or they would miss its headers and its audit row."""
    source = inspect.getsource(module)
    for name in ("FileResponse", "HttpResponse(", "Content-Disposition", "Cache-Control", "record_event"):
        assert name not in source, f"{module.__name__} uses {name}: use cases.downloads"
