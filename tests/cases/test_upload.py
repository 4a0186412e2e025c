import io
import struct
import zlib

import pytest
from django.urls import reverse
from PIL import Image

from audit.models import AuditEvent
from cases.errors import NotAllowed
from cases.models import CellImage, SampleStatus
from cases.services import images_upload
from cases.validation import ImageRejected, validate_image_bytes

from ..factories import SampleFactory, image_bytes


def _bomb_png(width=30000, height=30000) -> bytes:
    """A tiny PNG header that claims a huge image (decompression bomb)."""
    raw = zlib.compress(b"\x00" * 1024)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_real_cell_images_are_accepted(cell_files):
    for path in cell_files:
        valid = validate_image_bytes(filename=path.name, data=path.read_bytes())
        assert valid.image_format == "JPEG"
        assert (valid.width, valid.height) == (320, 240)
        assert len(valid.sha256) == 64


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.jpeg", b"", "empty"),
        ("notes.jpeg", b"this is a text file pretending to be a JPEG\n" * 20, "not an image"),
        ("bomb.png", _bomb_png(), "pixel"),
        ("tiny.png", image_bytes(size=(4, 4)), "too small"),
        ("anim.gif", image_bytes(fmt="GIF"), "not accepted"),
    ],
)
def test_bad_files_are_rejected_with_the_file_name_and_reason(name, data, reason):
    with pytest.raises(ImageRejected) as exc:
        validate_image_bytes(filename=name, data=data)
    assert exc.value.filename == name
    assert reason in exc.value.reason
    assert name in str(exc.value)


def test_truncated_jpeg_is_rejected(cell_files):
    data = cell_files[0].read_bytes()
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        validate_image_bytes(filename="cut.jpeg", data=data[: len(data) // 2])


def test_oversize_file_is_rejected(settings, cell_files):
    settings.HV_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(ImageRejected, match="over the"):
        validate_image_bytes(filename="big.jpeg", data=cell_files[0].read_bytes())


def test_pixel_limit_from_settings(settings):
    settings.HV_MAX_IMAGE_PIXELS = 100 * 100
    with pytest.raises(ImageRejected, match="pixel limit"):
        validate_image_bytes(filename="large.png", data=image_bytes(size=(200, 200)))


def test_extension_that_lies_is_judged_by_content():
    png = image_bytes(fmt="PNG")
    assert validate_image_bytes(filename="really-a-png.jpeg", data=png).image_format == "PNG"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_microscope_formats_are_accepted(fmt):
    assert validate_image_bytes(filename=f"x.{fmt.lower()}", data=image_bytes(fmt=fmt)).image_format == fmt


@pytest.mark.django_db
def test_mixed_upload_keeps_good_files_and_names_bad_ones(technician, sample, cell_files, request):
    files = [(p.name, p.read_bytes()) for p in cell_files[:3]]
    files += [("broken.jpeg", b"\xff\xd8\xff garbage"), ("empty.png", b""), (cell_files[0].name, files[0][1])]
    result = images_upload(actor=technician, sample=sample, files=files)
    assert [i.original_filename for i in result.accepted] == [p.name for p in cell_files[:3]]
    assert {(r.filename, r.reason.split(" ")[1]) for r in result.rejected} == {
        ("broken.jpeg", "file"), ("empty.png", "file"), (cell_files[0].name, "same"),
    }
    assert CellImage.objects.filter(sample=sample).count() == 3
    for image in result.accepted:
        assert image.status == "queued"
        assert image.width == 320 and image.height == 240
        assert image.file.read() == dict(files)[image.original_filename]
        assert image.original_filename not in image.file.name  # random storage names
    sample.refresh_from_db()
    assert sample.status == SampleStatus.IMAGES_UPLOADED
    assert AuditEvent.objects.filter(object_type="cases.cellimage", action="create").count() == 3


@pytest.mark.django_db(transaction=True)
def test_accepted_images_are_queued_after_commit(technician, cell_files, request):
    sample = SampleFactory()
    result = images_upload(actor=technician, sample=sample, files=[(p.name, p.read_bytes()) for p in cell_files[:2]])
    assert request.node.enqueued == [[i.pk for i in result.accepted]]


@pytest.mark.django_db
def test_duplicate_across_uploads_is_detected(technician, sample, cell_files):
    data = cell_files[0].read_bytes()
    images_upload(actor=technician, sample=sample, files=[("a.jpeg", data)])
    again = images_upload(actor=technician, sample=sample, files=[("b.jpeg", data)])
    assert not again.accepted
    assert again.rejected[0].reason == "the same image is already in this sample"
    other = SampleFactory()
    assert images_upload(actor=technician, sample=other, files=[("a.jpeg", data)]).accepted


@pytest.mark.django_db
@pytest.mark.parametrize("status", [SampleStatus.SIGNED, SampleStatus.CANCELLED])
def test_closed_samples_accept_no_images(technician, cell_files, status):
    sample = SampleFactory(status=status)
    result = images_upload(actor=technician, sample=sample, files=[("a.jpeg", cell_files[0].read_bytes())])
    assert not result.accepted
    assert "accepts no new images" in result.rejected[0].reason
    assert not CellImage.objects.exists()


@pytest.mark.django_db
def test_only_technicians_upload(doctor, sample, cell_files):
    with pytest.raises(NotAllowed):
        images_upload(actor=doctor, sample=sample, files=[("a.jpeg", cell_files[0].read_bytes())])


@pytest.mark.django_db
def test_upload_page_reports_each_rejected_file(client, technician, sample, cell_files):
    client.force_login(technician)
    good = io.BytesIO(cell_files[0].read_bytes())
    good.name = cell_files[0].name
    bad = io.BytesIO(b"not an image")
    bad.name = "lying.jpeg"
    empty = io.BytesIO(b"")
    empty.name = "zero.jpeg"
    response = client.post(reverse("sample-upload", args=[sample.pk]), {"images": [good, bad, empty]}, follow=True)
    page = response.content.decode()
    assert "1 image(s) accepted" in page
    assert "Rejected lying.jpeg: the file is not an image that can be decoded" in page
    assert "Rejected zero.jpeg: the file is empty (0 bytes)" in page
    assert sample.images.count() == 1


@pytest.mark.django_db
def test_uploaded_image_is_served_only_to_signed_in_users(client, technician, sample, cell_files):
    data = cell_files[0].read_bytes()
    image = images_upload(actor=technician, sample=sample, files=[("a.jpeg", data)]).accepted[0]
    url = reverse("image-file", args=[image.pk])
    assert client.get(url).status_code == 302
    client.force_login(technician)
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    Image.open(io.BytesIO(data)).verify()


@pytest.mark.django_db
def test_concurrent_duplicate_leaves_no_orphan_file(technician, sample, cell_files, monkeypatch, settings):
    """The sha256 check passed, but another upload stored the same image first (unique constraint)."""
    from pathlib import Path

    data = cell_files[0].read_bytes()
    images_upload(actor=technician, sample=sample, files=[("first.jpeg", data)])
    monkeypatch.setattr(CellImage.objects, "filter", _hide_existing(CellImage.objects.filter))
    result = images_upload(actor=technician, sample=sample, files=[("second.jpeg", data)])
    assert result.rejected[0].reason == "the same image is already in this sample"
    stored = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert len(stored) == 1 and CellImage.objects.count() == 1


def _hide_existing(real_filter):
    """Make the up-front duplicate check miss the stored image, as a concurrent request would."""
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        qs = real_filter(*args, **kwargs)
        return qs.none() if calls["n"] == 1 else qs

    return fake
