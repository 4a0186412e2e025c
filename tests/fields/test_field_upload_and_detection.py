"""Whole fields: upload decides field vs cell, the worker path detects and cuts cells with their
provenance, blank fields are kept and counted, the sample waits for every field, the sweeper heals."""
import datetime

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.errors import NotAllowed
from cases.models import CellImage, CellOrigin, Field, FieldStatus, ImageStatus, SampleStatus, UploadKind
from cases.services import images_upload
from classifier import fields as field_services
from review import selectors as rs

from ..conftest import CELLS
from .conftest import ONE_AT_EDGE, TWO_INSIDE, blank_field_bytes, field_bytes, run_worker_path, upload_fields


def _cell_file():
    path = sorted(CELLS.glob("*/*.jpeg"))[0]
    return path.name, path.read_bytes()


@pytest.mark.django_db
def test_auto_upload_tells_a_field_from_a_single_cell_and_says_why(request, technician, sample):
    cell_name, cell_data = _cell_file()
    result = images_upload(
        actor=technician, sample=sample, files=[(f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE)), (cell_name, cell_data)]
    )
    assert [f.original_filename for f in result.fields] == [f"{TWO_INSIDE}.jpg"]
    assert [i.original_filename for i in result.accepted] == [cell_name]
    decisions = {d.filename: d for d in result.decisions}
    assert decisions[f"{TWO_INSIDE}.jpg"].kind == UploadKind.FIELD
    assert decisions[f"{TWO_INSIDE}.jpg"].reason.startswith("field: 640x480 with 2 white cell(s)")
    assert decisions[cell_name].kind == UploadKind.CELL
    assert decisions[cell_name].reason.startswith("single cell: the image is 320x240")
    field = result.fields[0]
    assert field.status == FieldStatus.RECEIVED and field.decision == decisions[f"{TWO_INSIDE}.jpg"].reason
    assert field.file.name.startswith("fields/")
    sample.refresh_from_db()
    assert sample.status == SampleStatus.IMAGES_UPLOADED


@pytest.mark.django_db(transaction=True)
def test_fields_and_cells_are_queued_after_commit(request, technician, sample):
    cell_name, cell_data = _cell_file()
    result = images_upload(
        actor=technician, sample=sample, files=[(f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE)), (cell_name, cell_data)]
    )
    assert request.node.enqueued_fields == [[result.fields[0].pk]]
    assert request.node.enqueued == [[result.accepted[0].pk]]


@pytest.mark.django_db
def test_technician_choice_overrides_the_decision(technician, sample):
    as_cell = images_upload(
        actor=technician, sample=sample, files=[("f.jpg", field_bytes(TWO_INSIDE))], kind=UploadKind.CELL
    )
    assert len(as_cell.accepted) == 1 and not as_cell.fields
    assert as_cell.decisions[0].reason == "single cell: the technician uploaded it as a single-cell image"
    name, data = _cell_file()
    as_field = images_upload(actor=technician, sample=sample, files=[(name, data)], kind=UploadKind.FIELD)
    assert len(as_field.fields) == 1 and not as_field.accepted
    # The same image twice, once as a cell and once as a field: still one copy per sample.
    again = images_upload(actor=technician, sample=sample, files=[("g.jpg", field_bytes(TWO_INSIDE))])
    assert again.rejected[0].reason == "the same image is already in this sample"


@pytest.mark.django_db
def test_unknown_kind_and_wrong_role_are_refused(technician, doctor, sample):
    with pytest.raises(ValidationError) as exc:
        images_upload(actor=technician, sample=sample, files=[("f.jpg", field_bytes(TWO_INSIDE))], kind="slide")
    assert "kind" in exc.value.message_dict
    with pytest.raises(NotAllowed):
        images_upload(actor=doctor, sample=sample, files=[("f.jpg", field_bytes(TWO_INSIDE))], kind=UploadKind.FIELD)


@pytest.mark.django_db
def test_large_fields_pass_the_upload_limits(technician, sample):
    from io import BytesIO

    from PIL import Image

    files = []
    for fmt, size in (("JPEG", (1280, 960)), ("PNG", (640, 480)), ("TIFF", (800, 600))):
        buf = BytesIO()
        Image.open(BytesIO(field_bytes(TWO_INSIDE))).resize(size).save(buf, format=fmt)
        files.append((f"big.{fmt.lower()}", buf.getvalue()))
    result = upload_fields(technician, sample, files)
    assert not result.rejected and len(result.fields) == 3


@pytest.mark.django_db
def test_detection_cuts_each_white_cell_with_its_provenance_and_flags_the_edge_cell(
    request, technician, sample, fake_model
):
    field = upload_fields(technician, sample, [(f"{ONE_AT_EDGE}.jpg", field_bytes(ONE_AT_EDGE))]).fields[0]
    outcome = field_services.detect_fields(field_ids=[field.pk])
    assert outcome == {"detected": [field.pk], "failed": [], "skipped": []}
    field.refresh_from_db()
    assert field.status == FieldStatus.DETECTED and field.detector == "wbc-detector-v1"
    assert field.white_cells_found == 2 and field.rbc_count > 0 and field.platelet_count is not None
    cells = list(field.cells.order_by("pk"))
    assert len(cells) == 2
    for cell in cells:
        assert cell.origin == CellOrigin.DETECTED and cell.sample_id == sample.pk
        assert (cell.width, cell.height) == (320, 240) and cell.image_format == "PNG"
        assert cell.uploaded_by == technician  # the field's uploader: the four-eyes rule reads it
        x0, y0, x1, y1 = cell.box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
        assert cell.status == ImageStatus.QUEUED
    edge = [c for c in cells if c.touches_edge]
    assert len(edge) == 1 and edge[0].box_x1 >= 630 and edge[0].box_y1 >= 470
    # Sample: classifying while the cells wait, awaiting review once they are classified.
    sample.refresh_from_db()
    assert sample.status == SampleStatus.CLASSIFYING
    run_worker_path(sample)
    assert sample.status == SampleStatus.AWAITING_REVIEW
    assert {r.image.pk for r in rs.review_cells(sample=sample)} == {c.pk for c in cells}
    # A redelivered message stores nothing twice.
    assert field_services.detect_fields(field_ids=[field.pk])["skipped"] == [field.pk]
    assert field.cells.count() == 2
    assert AuditEvent.objects.filter(object_type="cases.field", object_id=str(field.pk), action="update").exists()


@pytest.mark.django_db
def test_a_field_without_white_cells_is_kept_counted_and_shown(client, technician, sample, fake_model):
    result = images_upload(actor=technician, sample=sample, files=[("blank.png", blank_field_bytes())])
    assert len(result.fields) == 1, result.decisions  # auto: field-sized, red cells, no white cell
    run_worker_path(sample)
    field = Field.objects.get(pk=result.fields[0].pk)
    assert field.status == FieldStatus.DETECTED and field.white_cells_found == 0 and field.rbc_count >= 6
    assert sample.status == SampleStatus.AWAITING_REVIEW  # nothing left to wait for
    examined = rs.examined(sample=sample)
    assert (examined.fields, examined.fields_without_white_cells, examined.cells) == (1, 1, 0)
    client.force_login(technician)
    page = client.get(reverse("sample-detail", args=[sample.pk])).content.decode()
    assert "blank.png" in page and "(none found)" in page and "estimate" in page


@pytest.mark.django_db
def test_sample_waits_for_every_field_before_review(technician, sample, fake_model):
    name, data = _cell_file()
    result = images_upload(
        actor=technician, sample=sample, files=[(name, data), (f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE))]
    )
    from classifier import services as classifier_services

    classifier_services.classify_images(image_ids=[result.accepted[0].pk])
    sample.refresh_from_db()
    assert sample.status == SampleStatus.CLASSIFYING  # the field is not detected yet
    run_worker_path(sample)
    assert sample.status == SampleStatus.AWAITING_REVIEW
    assert sample.images.count() == 3


@pytest.mark.django_db
def test_an_unreadable_field_fails_with_the_reason_and_releases_the_sample(technician, sample, fake_model):
    field = upload_fields(technician, sample, [(f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE))]).fields[0]
    field.file.save("broken.jpg", ContentFile(b"not an image"))
    field_services.detect_fields(field_ids=[field.pk])
    field.refresh_from_db()
    sample.refresh_from_db()
    assert field.status == FieldStatus.FAILED and "could not be analysed" in field.error_message
    assert sample.status == SampleStatus.AWAITING_REVIEW


@pytest.mark.django_db
def test_sweeper_heals_a_stuck_field_and_fails_one_tried_too_often(request, technician, sample, fake_model, settings):
    lost = upload_fields(technician, sample, [(f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE))]).fields[0]
    killed = upload_fields(technician, sample, [(f"{ONE_AT_EDGE}.jpg", field_bytes(ONE_AT_EDGE))]).fields[0]
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    Field.objects.filter(pk=lost.pk).update(status_changed_at=long_ago)
    Field.objects.filter(pk=killed.pk).update(
        status=FieldStatus.DETECTING, status_changed_at=long_ago, attempts=settings.HV_MAX_CLASSIFY_ATTEMPTS
    )
    request.node.enqueued_fields.clear()
    from classifier import tasks

    assert tasks.sweep_stuck_images() == 1
    assert request.node.enqueued_fields == [[lost.pk]]
    killed.refresh_from_db()
    assert killed.status == FieldStatus.FAILED and "did not complete" in killed.error_message
    # The re-sent message is then handled like the first one.
    field_services.detect_fields(field_ids=[lost.pk])
    assert CellImage.objects.filter(field=lost).count() == 2
