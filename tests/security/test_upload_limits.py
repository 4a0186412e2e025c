"""Uploads stream to temporary files, and one request carries at most HV_MAX_UPLOAD_REQUEST_BYTES.

A request over the limit gets a 413 naming it, on the page and through the API alike, before
anything is read: nothing is stored and nothing already stored is lost.
"""
import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from cases import services
from cases.models import CellImage, SampleStatus

from ..factories import image_bytes

pytestmark = pytest.mark.django_db

LIMIT = 50_000



@pytest.fixture
def tech_api(technician):
    client = APIClient()
    client.force_authenticate(technician)
    return client


@pytest.fixture
def stored(technician, sample):
    """An image already in the sample before the refused request."""
    (image,) = services.images_upload(actor=technician, sample=sample, files=[("kept.png", image_bytes())]).accepted
    return image


def noise_png(seed: int) -> bytes:
    """A valid image that does not compress: about 77 kB, far under the per-file limit."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def two_images() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"cell{i}.png", noise_png(i)) for i in range(2)]


def assert_only(stored) -> None:
    assert list(CellImage.objects.values_list("pk", flat=True)) == [stored.pk]
    assert Path(stored.file.path).is_file()
    stored.sample.refresh_from_db()
    assert stored.sample.status == SampleStatus.IMAGES_UPLOADED


def test_api_upload_over_the_request_limit_is_413_naming_it_and_stores_nothing(settings, tech_api, stored):
    settings.HV_MAX_UPLOAD_REQUEST_BYTES = LIMIT
    url = reverse("api:sample-images", args=[stored.sample_id])
    response = tech_api.post(url, {"images": two_images()}, format="multipart")
    assert response.status_code == 413, response.content
    assert f"over the {LIMIT} bytes limit for one request" in response.json()["detail"]
    assert_only(stored)


def test_page_upload_over_the_request_limit_is_413_naming_it_and_stores_nothing(settings, client, technician, stored):
    settings.HV_MAX_UPLOAD_REQUEST_BYTES = LIMIT
    client.force_login(technician)
    page = reverse("sample-detail", args=[stored.sample_id])
    response = client.post(
        reverse("sample-upload", args=[stored.sample_id]), {"images": two_images()}, HTTP_REFERER=f"http://testserver{page}"
    )
    assert response.status_code == 413
    body = response.content.decode()
    assert f"over the {LIMIT} bytes limit for one request" in body
    assert f'href="http://testserver{page}"' in body
    assert_only(stored)


def test_the_same_request_under_the_limit_is_stored(settings, tech_api, sample):
    settings.HV_MAX_UPLOAD_REQUEST_BYTES = 10 * LIMIT
    url = reverse("api:sample-images", args=[sample.pk])
    response = tech_api.post(url, {"images": two_images()}, format="multipart")
    assert response.status_code == 201, response.content
    assert CellImage.objects.filter(sample=sample).count() == 2


def test_uploaded_files_reach_the_service_as_temporary_files_not_bytes(
    monkeypatch, client, tech_api, technician, sample
):
    contents = []
    real_upload = services.images_upload

    def spy(*, files, **kwargs):
        files = list(files)
        contents.extend(content for _, content in files)
        return real_upload(files=files, **kwargs)

    monkeypatch.setattr(services, "images_upload", spy)
    client.force_login(technician)
    client.post(reverse("sample-upload", args=[sample.pk]), {"images": [SimpleUploadedFile("a.png", image_bytes())]})
    response = tech_api.post(
        reverse("api:sample-images", args=[sample.pk]),
        {"images": [SimpleUploadedFile("b.png", image_bytes(color=(10, 20, 30)))]},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert len(contents) == 2
    assert all(isinstance(content, TemporaryUploadedFile) for content in contents), contents
    assert CellImage.objects.filter(sample=sample).count() == 2


class UnreadableFile(ContentFile):
    def read(self, *args, **kwargs):
        raise AssertionError("an oversize file was read")


def test_service_stores_files_and_rejects_an_oversize_one_without_reading_it(settings, technician, sample):
    settings.HV_MAX_UPLOAD_BYTES = 1000
    files = [("big.png", UnreadableFile(b"x" * 5000, name="big.png")), ("ok.png", ContentFile(image_bytes()))]
    result = services.images_upload(actor=technician, sample=sample, files=files)
    assert [(r.filename, r.reason) for r in result.rejected] == [
        ("big.png", "the file is 5000 bytes, over the 1000 bytes limit")
    ]
    assert [image.original_filename for image in result.accepted] == ["ok.png"]


def test_a_batch_of_rejected_files_is_not_kept_in_memory(technician, sample):
    """Each file is read, judged and let go: a rejection keeps no traceback holding the file's bytes."""
    files = []
    for i in range(8):
        upload = TemporaryUploadedFile(f"noise{i}.png", "image/png", 1024 * 1024, None)
        upload.write(os.urandom(1024 * 1024))  # on disk, not an image
        upload.flush()
        files.append((upload.name, upload))
    tracemalloc.start()
    try:
        result = services.images_upload(actor=technician, sample=sample, files=files)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for _, upload in files:
            upload.close()
    assert len(result.rejected) == 8
    assert peak < 4 * 1024 * 1024, f"{peak / 2**20:.1f} MB held for 8 files of 1 MB"
