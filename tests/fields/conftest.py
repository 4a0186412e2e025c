import io
from pathlib import Path

from PIL import Image, ImageDraw

from cases.models import UploadKind
from cases.services import images_upload
from classifier import fields as field_services
from classifier import services as classifier_services

from ..queue.conftest import fake_model  # noqa: F401 - the fields tests share the queue's fake model

FIELDS = Path(__file__).resolve().parents[1] / "fixtures" / "fields"
TWO_INSIDE, ONE_AT_EDGE = "BloodImage_00010", "BloodImage_00043"


def field_bytes(stem: str) -> bytes:
    return (FIELDS / f"{stem}.jpg").read_bytes()


def blank_field_bytes() -> bytes:
    """A 640x480 slide with red cells and no white cell, coloured like BCCD."""
    img = Image.new("RGB", (640, 480), (208, 210, 206))
    draw = ImageDraw.Draw(img)
    for x, y in [(60, 60), (200, 60), (60, 420), (200, 420), (560, 60), (560, 300), (370, 430), (360, 200)]:
        draw.ellipse((x - 48, y - 48, x + 48, y + 48), fill=(190, 130, 130))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def run_worker_path(sample) -> None:
    """What a worker does after an upload: detect every pending field, then classify every
    queued cell (the tasks' services, called in this process)."""
    field_ids = list(sample.fields.filter(status="received").values_list("pk", flat=True))
    if field_ids:
        field_services.detect_fields(field_ids=field_ids)
    image_ids = list(sample.images.filter(status="queued").values_list("pk", flat=True))
    if image_ids:
        classifier_services.classify_images(image_ids=image_ids)
    sample.refresh_from_db()


def upload_fields(technician, sample, files, kind=UploadKind.FIELD):
    return images_upload(actor=technician, sample=sample, files=files, kind=kind)
