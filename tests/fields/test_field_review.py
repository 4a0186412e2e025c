"""Whole fields under review: a doctor rejects a false detection or adds a missed cell (audited, in
the differential and the sign-off rule), the field view, the report's counts, the agreement."""
import io
import json

import pytest
from django.urls import reverse
from pypdf import PdfReader
from rest_framework.test import APIClient

from accounts.roles import Role
from audit.models import AuditEvent
from cases.errors import InvalidState, NotAllowed
from cases.models import CellOrigin, SampleStatus
from review import selectors as rs
from review import services as reviews
from review.reports import fhir_diagnostic_report, render_pdf

from ..factories import PASSWORD, UserFactory
from .conftest import ONE_AT_EDGE, TWO_INSIDE, blank_field_bytes, field_bytes, run_worker_path, upload_fields


@pytest.fixture
def field_sample(technician, sample, fake_model):
    """A sample with two BCCD fields (four white cells) and a blank one, detected and classified."""
    upload_fields(technician, sample, [
        (f"{TWO_INSIDE}.jpg", field_bytes(TWO_INSIDE)), (f"{ONE_AT_EDGE}.jpg", field_bytes(ONE_AT_EDGE)),
        ("blank.png", blank_field_bytes()),
    ])
    run_worker_path(sample)
    assert sample.status == SampleStatus.AWAITING_REVIEW
    return sample


def _field(sample, stem):
    return sample.fields.get(original_filename__startswith=stem)


@pytest.mark.django_db
def test_rejecting_a_detection_is_audited_and_takes_it_out_of_the_differential(field_sample, doctor):
    before = rs.differential(rows=rs.review_cells(sample=field_sample), wbc_count=None)
    assert before.ai_total == 4
    cell = _field(field_sample, TWO_INSIDE).cells.order_by("pk").first()
    reviews.field_cell_reject(actor=doctor, image=cell, reason="a platelet clump")
    cell.refresh_from_db()
    assert cell.is_rejected and cell.rejected_by == doctor and cell.rejection_reason == "a platelet clump"
    rows = rs.review_cells(sample=field_sample)
    assert cell.pk not in {r.image.pk for r in rows}
    assert rs.differential(rows=rows, wbc_count=None).ai_total == 3
    event = AuditEvent.objects.filter(
        object_type="cases.cellimage", object_id=str(cell.pk), action="update"
    ).order_by("pk").last()
    assert event.actor == doctor and event.reason == "a platelet clump" and event.new_values["rejected_at"]
    with pytest.raises(InvalidState):
        reviews.field_cell_reject(actor=doctor, image=cell)
    reviews.field_cell_restore(actor=doctor, image=cell)
    assert len(rs.review_cells(sample=field_sample)) == 4


@pytest.mark.django_db
def test_added_cell_is_classified_like_any_other_and_sign_off_waits_for_its_review(
    request, field_sample, doctor, technician
):
    field = _field(field_sample, "blank")
    added = reviews.field_cell_add(actor=doctor, field=field, box=[300, 200, 400.4, 290])
    assert added.origin == CellOrigin.ADDED and added.added_by == doctor and added.box == (300, 200, 400, 290)
    assert added.uploaded_by == technician and (added.width, added.height) == (320, 240)
    assert AuditEvent.objects.filter(object_type="cases.cellimage", object_id=str(added.pk), action="create",
                                     actor=doctor).exists()
    field_sample.refresh_from_db()
    assert field_sample.status == SampleStatus.CLASSIFYING  # back to the queue for the new cell
    with pytest.raises(InvalidState):
        reviews.field_cell_add(actor=doctor, field=field, box=[10, 10, 90, 90])  # not reviewable meanwhile
    run_worker_path(field_sample)
    assert field_sample.status == SampleStatus.AWAITING_REVIEW
    other = UserFactory(role=Role.DOCTOR)
    for row in rs.review_cells(sample=field_sample):
        if row.image.pk != added.pk:
            reviews.cell_review(actor=other, image=row.image, final_class="NEUTROPHIL")
    assert "1 cell(s) are not reviewed" in reviews.sign_off_blockers(sample=field_sample, actor=other)
    added.refresh_from_db()
    reviews.cell_review(actor=other, image=added, final_class="LYMPHOCYTE")
    assert reviews.sign_off_blockers(sample=field_sample, actor=other) == []
    examined = rs.examined(sample=field_sample)
    assert (examined.fields, examined.cells, examined.cells_added) == (3, 5, 1)


@pytest.mark.django_db
def test_add_and_reject_are_refused_to_other_roles_and_for_bad_boxes(field_sample, technician, admin_user, doctor):
    field = _field(field_sample, TWO_INSIDE)
    cell = field.cells.first()
    for actor in (technician, admin_user):
        with pytest.raises(NotAllowed):
            reviews.field_cell_add(actor=actor, field=field, box=[10, 10, 90, 90])
        with pytest.raises(NotAllowed):
            reviews.field_cell_reject(actor=actor, image=cell)
    from django.core.exceptions import ValidationError

    for box in ([10, 10, 12, 90], [700, 10, 800, 90], ["a", 1, 2, 3]):
        with pytest.raises(ValidationError):
            reviews.field_cell_add(actor=doctor, field=field, box=box)
    with pytest.raises(ValidationError):  # the same box as a detection
        reviews.field_cell_add(actor=doctor, field=field, box=list(cell.box))


@pytest.mark.django_db
def test_signed_report_states_fields_and_cells_examined(field_sample, doctor):
    cells = list(field_sample.images.order_by("pk"))
    reviews.field_cell_reject(actor=doctor, image=cells[0], reason="debris")
    for cell in cells[1:]:
        reviews.cell_review(actor=doctor, image=cell, final_class="NEUTROPHIL")
    signature = reviews.sample_sign(actor=doctor, sample=field_sample, password=PASSWORD)
    assert signature.snapshot["examined"]["fields"] == 3
    assert signature.snapshot["examined"]["cells_rejected"] == 1
    assert all(c["field_id"] and c["box"] for c in signature.snapshot["cells"])
    pdf = PdfReader(io.BytesIO(render_pdf(sample=field_sample, signature=signature)))
    text = "".join(p.extract_text() for p in pdf.pages)
    text = " ".join(text.split())
    assert "Examined: 3 whole field(s) (1 without white cells) and 3 cell(s)" in text
    assert "1 detection(s) rejected by the reviewer" in text
    bundle = fhir_diagnostic_report(sample=field_sample, signature=signature)
    report = bundle["entry"][0]["resource"]
    assert "Examined: 3 whole field(s) (1 without white cells) and 3 cell(s)" in report["conclusion"]
    # The detection agreement counts the signed sample's fields.
    [row] = rs.detection_agreement()
    assert (row.detector, row.fields, row.detected, row.rejected, row.added) == ("wbc-detector-v1", 3, 4, 1, 0)


@pytest.mark.django_db
def test_field_view_draws_every_box_and_highlights_the_cell(client, field_sample, doctor):
    field = _field(field_sample, ONE_AT_EDGE)
    cell = field.cells.order_by("pk").last()
    client.force_login(doctor)
    review_page = client.get(reverse("sample-review", args=[field_sample.pk])).content.decode()
    assert f"{reverse('field-view', args=[field.pk])}?cell={cell.pk}" in review_page
    page = client.get(reverse("field-view", args=[field.pk]), {"cell": cell.pk}).content.decode()
    assert page.count('data-image-id="') == 2
    assert "box-selected" in page and "box-edge" in page
    assert reverse("api:field-cells", args=[field.pk]) in page and "js/field.js" in page
    assert "<style" not in page and "style=" not in page  # CSP: no inline styles


@pytest.mark.django_db
def test_api_upload_fields_and_review_them(field_sample, technician, doctor):
    api = APIClient()
    api.force_authenticate(technician)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        reverse("api:sample-images", args=[field_sample.pk]),
        {"images": [SimpleUploadedFile("f.jpg", field_bytes(TWO_INSIDE)[:-1] + b"\xd9")], "kind": "auto"},
        format="multipart",
    )
    assert response.status_code in (201, 400)
    listed = api.get(reverse("api:sample-fields", args=[field_sample.pk])).json()
    assert listed["count"] == 3
    detail = api.get(reverse("api:field-detail", args=[_field(field_sample, ONE_AT_EDGE).pk])).json()
    assert len(detail["cells"]) == 2 and sum(c["touches_edge"] for c in detail["cells"]) == 1
    assert detail["rbc_count"] > 0 and detail["detector"] == "wbc-detector-v1"
    doc = APIClient()
    doc.force_authenticate(doctor)
    cell_id = detail["cells"][0]["image_id"]
    url = reverse("api:field-cell-reject", args=[detail["id"], cell_id])
    rejected = doc.post(url, {"reason": "stain debris"}, format="json")
    assert rejected.status_code == 200 and rejected.json()["rejected"] is True
    assert doc.post(url, {}, format="json").status_code == 409
    assert doc.delete(url).json()["rejected"] is False
    added = doc.post(reverse("api:field-cells", args=[detail["id"]]), {"box": [20, 20, 120, 120]}, format="json")
    assert added.status_code == 201 and added.json()["origin"] == "added"
    refused = api.post(reverse("api:field-cells", args=[detail["id"]]), {"box": [1, 1, 90, 90]}, format="json")
    assert refused.status_code == 403


@pytest.mark.django_db
def test_api_upload_says_what_it_decided(technician, sample):
    from django.core.files.uploadedfile import SimpleUploadedFile

    api = APIClient()
    api.force_authenticate(technician)
    response = api.post(
        reverse("api:sample-images", args=[sample.pk]),
        {"images": [SimpleUploadedFile("field.jpg", field_bytes(TWO_INSIDE))]}, format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["accepted"] == [] and body["fields"][0]["status"] == "received"
    assert body["decisions"][0]["kind"] == "field" and body["decisions"][0]["reason"].startswith("field: 640x480")


@pytest.mark.django_db
def test_page_upload_says_what_it_decided(client, technician, sample):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(technician)
    response = client.post(
        reverse("sample-upload", args=[sample.pk]),
        {"images": [SimpleUploadedFile("field.jpg", field_bytes(TWO_INSIDE))], "kind": "auto"}, follow=True,
    )
    page = response.content.decode()
    assert "1 field(s) accepted and queued for white-cell detection." in page
    assert "field.jpg: taken as a field: 640x480 with 2 white cell(s)" in page


@pytest.mark.django_db
def test_openapi_schema_lists_the_field_endpoints(doctor):
    api = APIClient()
    api.force_authenticate(doctor)
    schema = api.get(reverse("api:schema"), {"format": "json"})
    paths = json.loads(schema.content)["paths"] if schema["Content-Type"].startswith("application/json") else None
    if paths is None:
        import yaml

        paths = yaml.safe_load(schema.content)["paths"]
    for path, method in [
        ("/api/v1/samples/{id}/fields/", "get"), ("/api/v1/fields/{id}/", "get"), ("/api/v1/fields/{id}/file/", "get"),
        ("/api/v1/fields/{id}/cells/", "post"), ("/api/v1/fields/{id}/cells/{image_pk}/reject/", "post"),
        ("/api/v1/fields/{id}/cells/{image_pk}/reject/", "delete"), ("/api/v1/agreement/detection/", "get"),
    ]:
        assert method in paths[path], path
    upload = paths["/api/v1/samples/{id}/images/"]["post"]
    assert "kind" in json.dumps(upload)
