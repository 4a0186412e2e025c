"""Image upload through the API: good formats accepted, bad files rejected one by one, nothing written."""
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from cases.models import CellImage, ImageStatus, SampleStatus
from cases.services import image_set_status
from classifier.preprocessing import load_image

from ..factories import ModelVersionFactory, PredictionFactory, SampleFactory
from . import images as img

pytestmark = pytest.mark.django_db


def upload_url(sample_id: int) -> str:
    return reverse("api:sample-images", args=[sample_id])


def upload(client, sample_id, *files):
    payload = {"images": [SimpleUploadedFile(name, data) for name, data in files]}
    return client.post(upload_url(sample_id), payload, format="multipart")


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def nothing_written():
    """Asserts that a block wrote no image row, no file and no image audit row."""

    class Snapshot:
        def __enter__(self):
            self.rows = CellImage.objects.count()
            self.files = stored_files()
            self.audit = AuditEvent.objects.filter(object_type="cases.cellimage").count()
            return self

        def __exit__(self, *exc):
            assert CellImage.objects.count() == self.rows, "an image row was written"
            assert stored_files() == self.files, "a file was written"
            assert AuditEvent.objects.filter(object_type="cases.cellimage").count() == self.audit
            return False

    return Snapshot


# Accepted formats ----------------------------------------------------------------


ACCEPTED = [
    ("cmyk.jpg", img.cmyk_jpeg, "JPEG", (320, 240)),
    ("deep.png", img.png_16bit, "PNG", (320, 240)),
    ("alpha.png", img.png_alpha, "PNG", (320, 240)),
    ("gray.jpg", img.grayscale_jpeg, "JPEG", (320, 240)),
    ("rotated.jpg", img.exif_rotated_jpeg, "JPEG", (240, 320)),  # upright after EXIF orientation
    ("cell.tiff", img.tiff, "TIFF", (320, 240)),
    ("cell.bmp", img.bmp, "BMP", (320, 240)),
    ("real-png.jpeg", img.png, "PNG", (320, 240)),  # the extension lies; the content decides
]


@pytest.mark.parametrize(("name", "make", "fmt", "upright_size"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_each_accepted_format_is_stored_queued_and_convertible(
    request, django_capture_on_commit_callbacks, tech_api, sample, name, make, fmt, upright_size
):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(tech_api, sample.pk, (name, make()))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["rejected"] == []
    [accepted] = body["accepted"]
    assert accepted["original_filename"] == name
    assert accepted["image_format"] == fmt
    assert accepted["status"] == ImageStatus.QUEUED
    assert accepted["prediction"] is None
    image = CellImage.objects.get(pk=accepted["id"])
    assert image.uploaded_by.username == "tech1"
    assert not image.file.name.endswith(name)  # stored under a random name
    sample.refresh_from_db()
    assert sample.status == SampleStatus.IMAGES_UPLOADED
    assert request.node.enqueued == [[image.pk]]  # queued for the worker once committed
    # What the worker will do with it: an upright 8-bit RGB image.
    with image.file.open("rb") as fh:
        rgb = load_image(fh.read())
    assert rgb.mode == "RGB"
    assert rgb.size == upright_size


def test_many_files_in_one_request_some_rejected(tech_api, sample):
    response = upload(
        tech_api,
        sample.pk,
        ("a.tiff", img.tiff(0)),
        ("notes.jpg", b"not an image at all\n" * 50),
        ("b.bmp", img.bmp(1)),
        ("c.jpeg", img.real_cell(2).read_bytes()),
    )
    assert response.status_code == 201
    body = response.json()
    assert [a["original_filename"] for a in body["accepted"]] == ["a.tiff", "b.bmp", "c.jpeg"]
    assert body["rejected"] == [{"file": "notes.jpg", "reason": "the file is not an image that can be decoded"}]
    assert CellImage.objects.filter(sample=sample).count() == 3


def test_same_image_twice_is_refused_the_second_time(tech_api, sample):
    data = img.real_cell(3).read_bytes()
    assert upload(tech_api, sample.pk, ("x.jpeg", data)).status_code == 201
    response = upload(tech_api, sample.pk, ("again.jpeg", data))
    assert response.status_code == 400
    assert response.json()["rejected"] == [{"file": "again.jpeg", "reason": "the same image is already in this sample"}]


# Rejected files: each names the file and the reason, nothing is written -------------------


REJECTED = [
    ("text.jpg", lambda: b"%PDF-1.7 definitely not a cell image\n" * 30, "not an image that can be decoded"),
    ("cut.jpeg", img.truncated_jpeg, "damaged or truncated"),
    ("empty.png", lambda: b"", "the file is empty (0 bytes)"),
    ("bomb.png", img.png_bomb, "decompression bomb"),
    ("fake.png", img.gif, "GIF images are not accepted"),  # the extension lies and GIF is not accepted
]


@pytest.mark.parametrize(("name", "make", "reason"), REJECTED, ids=[r[0] for r in REJECTED])
def test_bad_file_is_rejected_with_its_name_and_reason(request, tech_api, sample, nothing_written, name, make, reason):
    with nothing_written():
        response = upload(tech_api, sample.pk, (name, make()))
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == []
    [rejection] = body["rejected"]
    assert rejection["file"] == name
    assert reason in rejection["reason"]
    assert request.node.enqueued == []
    sample.refresh_from_db()
    assert sample.status == SampleStatus.REGISTERED


def test_oversize_file_is_rejected_before_it_is_read(settings, tech_api, sample, nothing_written):
    settings.HV_MAX_UPLOAD_BYTES = 10_000
    data = img.bmp()  # 230 kB
    with nothing_written():
        response = upload(tech_api, sample.pk, ("big.bmp", data))
    assert response.status_code == 400
    reason = "the file is 230454 bytes, over the 10000 bytes limit"
    assert response.json()["rejected"] == [{"file": "big.bmp", "reason": reason}]


def test_pixel_limit(settings, tech_api, sample, nothing_written):
    settings.HV_MAX_IMAGE_PIXELS = 10_000
    with nothing_written():
        response = upload(tech_api, sample.pk, ("large.png", img.png()))
    assert response.status_code == 400
    assert "pixel limit" in response.json()["rejected"][0]["reason"]


def test_signed_sample_accepts_no_images(tech_api, nothing_written):
    signed = SampleFactory(status=SampleStatus.SIGNED)
    with nothing_written():
        response = upload(tech_api, signed.pk, ("late.jpeg", img.real_cell(0).read_bytes()), ("late2.png", img.png()))
    assert response.status_code == 400
    rejected = response.json()["rejected"]
    assert [r["file"] for r in rejected] == ["late.jpeg", "late2.png"]
    assert all(f"sample {signed.accession_number} is signed" in r["reason"] for r in rejected)
    signed.refresh_from_db()
    assert signed.status == SampleStatus.SIGNED


def test_unknown_sample_is_404(tech_api, nothing_written):
    with nothing_written():
        response = upload(tech_api, 999_999, ("cell.png", img.png()))
    assert response.status_code == 404
    assert response.json() == {"detail": "No Sample matches the given query."}


def test_request_without_files_is_400(tech_api, sample, nothing_written):
    with nothing_written():
        response = tech_api.post(upload_url(sample.pk), {"note": "no files"}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Choose at least one image file (multipart field 'images').",
        "accepted": [],
        "fields": [],
        "decisions": [],
        "rejected": [],
    }


def test_json_instead_of_multipart_is_415(tech_api, sample, nothing_written):
    with nothing_written():
        response = tech_api.post(upload_url(sample.pk), {"images": ["x"]}, format="json")
    assert response.status_code == 415


def test_doctor_cannot_upload(doctor_api, sample, nothing_written):
    with nothing_written():
        response = upload(doctor_api, sample.pk, ("cell.png", img.png()))
    assert response.status_code == 403


# Reading images, predictions and files --------------------------------------------


@pytest.fixture
def classified(tech_api, sample):
    """A sample with two images, one of them classified (with a heatmap) by an active model."""
    body = upload(tech_api, sample.pk, ("a.png", img.png(0)), ("b.png", img.png(1))).json()
    first = CellImage.objects.get(pk=body["accepted"][0]["id"])
    version = ModelVersionFactory(name="v-test", threshold=0.6, is_active=True)
    prediction = PredictionFactory(
        image=first, model_version=version, predicted_class="MONOCYTE",
        probabilities={"EOSINOPHIL": 0.05, "LYMPHOCYTE": 0.1, "MONOCYTE": 0.8, "NEUTROPHIL": 0.05},
        confidence=0.8, heatmap=ContentFile(img.png(2), name="h.png"),
    )
    image_set_status(image=first, status=ImageStatus.CLASSIFIED)
    return {"sample": sample, "image": first, "prediction": prediction, "version": version}


def test_images_of_a_sample_with_latest_prediction(doctor_api, classified):
    response = doctor_api.get(upload_url(classified["sample"].pk))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first, second = body["results"]
    assert second["prediction"] is None
    pred = first["prediction"]
    assert pred["predicted_class"] == "MONOCYTE"
    assert pred["confidence"] == 0.8
    assert pred["unidentified"] is False
    assert pred["probabilities"]["MONOCYTE"] == 0.8
    assert pred["model_version"] == {"id": classified["version"].pk, "name": "v-test"}
    assert pred["heatmap_url"].endswith(reverse("api:prediction-heatmap", args=[classified["prediction"].pk]))
    assert first["file_url"].endswith(reverse("api:image-file", args=[classified["image"].pk]))

    heatmap = doctor_api.get(pred["heatmap_url"])
    assert heatmap.status_code == 200
    assert heatmap["Content-Type"] == "image/png"
    assert b"".join(heatmap.streaming_content) == img.png(2)


def test_image_file_is_streamed_to_clinical_staff_and_audited(doctor_api, classified):
    image = classified["image"]
    response = doctor_api.get(reverse("api:image-file", args=[image.pk]), HTTP_ACCEPT="image/*")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "private" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == img.png(0)
    event = AuditEvent.objects.get(action="download", object_id=str(image.pk))
    assert event.actor_username == "doc1"


def test_image_file_needs_sign_in_and_an_existing_image(api, doctor_api, classified):
    url = reverse("api:image-file", args=[classified["image"].pk])
    assert api.get(url).status_code == 401
    assert doctor_api.get(reverse("api:image-file", args=[999_999])).status_code == 404


def test_missing_file_on_disk_is_404_not_500(doctor_api, classified):
    image = classified["image"]
    Path(image.file.path).unlink()
    response = doctor_api.get(reverse("api:image-file", args=[image.pk]))
    assert response.status_code == 404
    assert response.json() == {"detail": "The file is missing from storage."}


def test_too_many_files_in_one_request_is_400_json(settings, tech_api, sample, nothing_written):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    with nothing_written():
        response = upload(tech_api, sample.pk, *[(f"c{i}.png", img.png(i)) for i in range(3)])
    assert response.status_code == 400
    assert response.json() == {"detail": "The request was refused as malformed or too large."}
