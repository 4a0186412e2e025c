import datetime
import io
import json
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from accounts.roles import Role
from audit.models import AuditEvent
from cases.errors import InvalidState, NotAllowed
from cases.models import SampleStatus
from review import selectors as rs
from review import services as reviews
from review.models import CellReview, Signature
from review.reports import LOINC_ABSOLUTE, LOINC_PERCENT, fhir_diagnostic_report

from ..factories import PASSWORD, SampleFactory, UserFactory, make_classified_sample

pytestmark = pytest.mark.django_db

AI = ["NEUTROPHIL", "NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "NEUTROPHIL"]


@pytest.fixture
def files(cell_files):
    return [(p.name, p.read_bytes()) for p in cell_files[: len(AI)]]


@pytest.fixture
def reviewable(technician, files):
    return make_classified_sample(technician=technician, files=files, ai_classes=AI, unidentified={5},
                                  wbc_count=Decimal("8.00"))


def _review_all(doctor, sample, final=None):
    for i, image in enumerate(sample.images.order_by("pk")):
        reviews.cell_review(actor=doctor, image=image, final_class=(final or AI)[i])


def test_gallery_puts_unidentified_on_top_and_groups_by_ai_class(reviewable):
    groups = rs.review_groups(rows=rs.review_cells(sample=reviewable))
    assert [g.key for g in groups] == ["UNIDENTIFIED", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert len(groups[0].cells) == 1 and len(groups[-1].cells) == 2


def test_differential_arithmetic(doctor, reviewable):
    images = list(reviewable.images.order_by("pk"))
    final = ["NEUTROPHIL", "NEUTROPHIL", "LYMPHOCYTE", "LYMPHOCYTE", "EOSINOPHIL", "EXCLUDED"]
    for image, cls in zip(images, final, strict=True):
        reviews.cell_review(actor=doctor, image=image, final_class=cls)
    diff = rs.differential(rows=rs.review_cells(sample=reviewable), wbc_count=Decimal("8.00"))
    rows = {r.cell_class: r for r in diff.rows}
    assert diff.ai_total == 6 and diff.final_total == 5 and diff.excluded == 1 and diff.unreviewed == 0
    assert (rows["NEUTROPHIL"].ai_count, rows["NEUTROPHIL"].ai_percent) == (3, Decimal("50.0"))
    # 3 × 16.67: largest remainder gives the two classes named first 16.7 and the third 16.6 (sum 100.0).
    assert [rows[c].ai_percent for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE")] == [Decimal("16.7")] * 2 + [
        Decimal("16.6")
    ]
    assert sum(r.ai_percent for r in diff.rows) == Decimal("100.0")
    assert (rows["NEUTROPHIL"].final_count, rows["NEUTROPHIL"].final_percent) == (2, Decimal("40.0"))
    assert rows["NEUTROPHIL"].absolute == Decimal("3.20")  # 8.0 × 2/5
    assert rows["LYMPHOCYTE"].absolute == Decimal("3.20")
    assert rows["EOSINOPHIL"].absolute == Decimal("1.60")
    assert rows["MONOCYTE"].final_count == 0 and rows["MONOCYTE"].absolute == Decimal("0.00")
    assert sum(r.final_percent for r in diff.rows) == Decimal("100.0")


def test_no_absolute_counts_without_wbc(doctor, technician, files):
    sample = make_classified_sample(technician=technician, files=files[:2], ai_classes=AI[:2])
    _review_all(doctor, sample)
    diff = rs.differential(rows=rs.review_cells(sample=sample), wbc_count=None)
    assert all(r.absolute is None for r in diff.rows)


def test_sign_off_refused_while_cells_are_unreviewed_or_unidentified(doctor, reviewable):
    with pytest.raises(reviews.SignOffBlocked, match="6 cell\\(s\\) are not reviewed"):
        reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    images = list(reviewable.images.order_by("pk"))
    reviews.group_confirm(actor=doctor, sample=reviewable, ai_class="NEUTROPHIL")
    assert CellReview.objects.count() == 2  # the unidentified neutrophil is not bulk-confirmed
    for image in images[2:5]:
        reviews.cell_review(actor=doctor, image=image, final_class=AI[images.index(image)])
    with pytest.raises(reviews.SignOffBlocked, match="1 cell\\(s\\) remain in the unidentified group"):
        reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    reviews.cell_review(actor=doctor, image=images[5], final_class="MONOCYTE")
    signature = reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.SIGNED
    assert signature.version == 1 and signature.printed_name == doctor.get_printed_name()
    assert signature.meaning == "reviewed_and_approved"


def test_sign_off_refused_with_a_wrong_password(doctor, reviewable):
    _review_all(doctor, reviewable)
    with pytest.raises(reviews.WrongPassword, match="password is not correct"):
        reviews.sample_sign(actor=doctor, sample=reviewable, password="not-my-password")
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.AWAITING_REVIEW
    assert AuditEvent.objects.filter(action="signature_failed", actor_id=doctor.pk).exists()


def test_sign_off_refused_to_the_uploader(files):
    both = UserFactory(role=Role.TECHNICIAN)
    both.groups.add(*UserFactory(role=Role.DOCTOR).groups.all())
    sample = make_classified_sample(technician=both, files=files[:2], ai_classes=AI[:2])
    _review_all(both, sample)
    with pytest.raises(reviews.SignOffBlocked, match="four-eyes"):
        reviews.sample_sign(actor=both, sample=sample, password=PASSWORD)
    other = UserFactory(role=Role.DOCTOR)
    assert reviews.sample_sign(actor=other, sample=sample, password=PASSWORD).signer == other


def test_sign_off_and_review_refused_to_technicians(technician, reviewable, client):
    with pytest.raises(NotAllowed):
        reviews.sample_sign(actor=technician, sample=reviewable, password=PASSWORD)
    with pytest.raises(NotAllowed):
        reviews.cell_review(actor=technician, image=reviewable.images.first(), final_class="MONOCYTE")
    client.force_login(technician)
    response = client.post(reverse("sample-sign", args=[reviewable.pk]), {"password": PASSWORD})
    assert response.status_code == 403
    assert not Signature.objects.exists()


def test_signed_sample_is_locked(doctor, reviewable):
    _review_all(doctor, reviewable)
    reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    with pytest.raises(InvalidState, match="locked|signed"):
        reviews.cell_review(actor=doctor, image=reviewable.images.first(), final_class="MONOCYTE")
    with pytest.raises(InvalidState):
        reviews.sample_comment_set(actor=doctor, sample=reviewable, comment="late change")
    with pytest.raises(InvalidState):  # nothing left to confirm, still refused: the sample is locked
        reviews.group_confirm(actor=doctor, sample=reviewable, ai_class="NEUTROPHIL")
    signature = Signature.objects.get()
    with pytest.raises(PermissionError):
        signature.save()
    with pytest.raises(PermissionError):
        signature.delete()


def test_amendment_keeps_the_original_and_needs_a_new_signature(doctor, reviewable):
    _review_all(doctor, reviewable)
    reviews.sample_comment_set(actor=doctor, sample=reviewable, comment="Original comment")
    first = reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    with pytest.raises(ValidationError, match="reason"):
        reviews.sample_amend(actor=doctor, sample=reviewable, reason="  ")
    reviews.sample_amend(actor=doctor, sample=reviewable, reason="Cell 4 is a monocyte")
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.AMENDED
    image = reviewable.images.order_by("pk")[4]
    reviews.cell_review(actor=doctor, image=image, final_class="MONOCYTE")
    second = reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    assert second.version == 2 and second.is_amendment
    assert second.amendment_reason == "Cell 4 is a monocyte"
    first.refresh_from_db()
    original = {r["class"]: r["final_count"] for r in first.snapshot["differential"]["rows"]}
    amended = {r["class"]: r["final_count"] for r in second.snapshot["differential"]["rows"]}
    assert original["EOSINOPHIL"] == 1 and amended["EOSINOPHIL"] == 0
    assert amended["MONOCYTE"] == original["MONOCYTE"] + 1
    assert first.snapshot["sample_comment"] == "Original comment"
    reason_event = AuditEvent.objects.filter(object_type="cases.sample", new_values__status="amended").get()
    assert reason_event.reason == "Cell 4 is a monocyte"


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_pdf_report_contains_the_required_fields(client, doctor, reviewable, settings):
    _review_all(doctor, reviewable)
    reviews.sample_comment_set(actor=doctor, sample=reviewable, comment="Mild neutrophilia.")
    reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    client.force_login(doctor)
    response = client.get(reverse("sample-report-pdf", args=[reviewable.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = _pdf_text(response.content)
    patient = reviewable.patient
    for expected in (
        settings.LAB_NAME, patient.family_name.upper(), patient.given_name, patient.mrn, reviewable.accession_number,
        "Peripheral blood smear", timezone.localtime(reviewable.collected_at).strftime("%Y-%m-%d %H:%M"),
        timezone.localtime(reviewable.received_at).strftime("%Y-%m-%d %H:%M"), "Report date",
        "Neutrophil", "Lymphocyte", "Monocyte", "Eosinophil", "50.0", "4.00", "1.33", "Mild neutrophilia.",
        "test-model", doctor.get_printed_name(), "Reviewed and approved",
    ):
        assert expected in text, expected
    assert "AMENDED" not in text
    assert AuditEvent.objects.filter(action="download", object_id=str(reviewable.pk)).exists()

    reviews.sample_amend(actor=doctor, sample=reviewable, reason="Typo in comment")
    reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    amended = _pdf_text(client.get(reverse("sample-report-pdf", args=[reviewable.pk])).content)
    assert "AMENDED" in amended and "Typo in comment" in amended
    original = _pdf_text(client.get(reverse("sample-report-pdf", args=[reviewable.pk]) + "?version=1").content)
    assert "AMENDED" not in original


def test_report_of_an_unsigned_sample_is_404(client, doctor, reviewable):
    client.force_login(doctor)
    assert client.get(reverse("sample-report-pdf", args=[reviewable.pk])).status_code == 404
    assert client.get(reverse("sample-fhir", args=[reviewable.pk])).status_code == 404


def test_fhir_export_has_the_diagnostic_report_shape(client, doctor, reviewable):
    _review_all(doctor, reviewable)
    reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    client.force_login(doctor)
    response = client.get(reverse("sample-fhir", args=[reviewable.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    bundle = json.loads(response.content)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    report = resources[0]
    assert report["resourceType"] == "DiagnosticReport"
    for required in ("status", "code", "subject", "effectiveDateTime", "issued", "result"):
        assert required in report, required
    assert report["status"] == "final"
    assert report["code"]["coding"][0] == {"system": "http://loinc.org", "code": "24318-8",
                                           "display": "Manual Differential panel - Blood"}
    assert report["identifier"][0]["value"] == reviewable.accession_number
    assert report["subject"]["reference"] in full_urls
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert {o["id"] for o in observations} == {ref["reference"].removeprefix("urn:uuid:") for ref in report["result"]}
    codes = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert codes["26464-8"]["valueQuantity"]["value"] == 8.0
    assert codes[LOINC_PERCENT["NEUTROPHIL"][0]]["valueQuantity"] == {
        "value": 50.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert codes[LOINC_ABSOLUTE["NEUTROPHIL"][0]]["valueQuantity"]["value"] == 4.0
    for o in observations:
        assert o["status"] == "final" and o["subject"] == report["subject"]
        assert o["code"]["coding"][0]["system"] == "http://loinc.org"
        datetime.datetime.fromisoformat(o["effectiveDateTime"])
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert patient["identifier"][0]["value"] == reviewable.patient.mrn
    sig = Signature.objects.get()
    assert fhir_diagnostic_report(sample=reviewable, signature=sig)["entry"][0]["resource"]["status"] == "final"


def test_keyboard_review_calls_the_api_with_the_page_session(doctor, reviewable):
    """What static/js/review.js does: the page's session cookie and CSRF token against /api/v1/."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[reviewable.pk]))
    image = reviewable.images.order_by("pk").first()
    api_url = reverse("api:cell-review", args=[reviewable.pk, image.pk])
    assert f'data-review-url="{api_url}"' in page.content.decode()
    body = json.dumps({"final_class": "LYMPHOCYTE", "comment": "atypical?"})
    assert client.post(api_url, body, content_type="application/json").status_code == 403  # no CSRF token
    csrf = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}
    response = client.post(api_url, body, content_type="application/json", **csrf)
    assert response.status_code == 200
    state = response.json()
    lymph = next(r for r in state["differential"]["rows"] if r["class"] == "LYMPHOCYTE")
    assert lymph["final_count"] == 1 and lymph["final_percent"] == "100.0"
    cell = state["cell"]
    # Reclassified: the gallery shows it with the lymphocytes now, noting the AI's class.
    assert (cell["final_class"], cell["comment"], cell["group"], cell["reclassified"]) == (
        "LYMPHOCYTE", "atypical?", "LYMPHOCYTE", True)
    bad = client.post(api_url, "{not json", content_type="application/json", **csrf)
    assert bad.status_code == 400 and "JSON parse error" in bad.json()["detail"]
    unknown = client.post(api_url, json.dumps({"final_class": "PLATELET"}), content_type="application/json", **csrf)
    assert unknown.status_code == 400 and "final_class" in unknown.json()
    event = AuditEvent.objects.filter(object_type="review.cellreview", action="create").get()
    assert event.new_values["final_class"] == "LYMPHOCYTE" and event.actor_id == doctor.pk


def test_review_page_and_sign_through_the_page(client, doctor, reviewable):
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[reviewable.pk])).content.decode()
    assert "Unidentified (low confidence)" in page and "Sign electronically" in page
    _review_all(doctor, reviewable)
    page = client.get(reverse("sample-review", args=[reviewable.pk])).content.decode()
    shown = re.search(r'name="result_sha256" id="result-sha256" value="([0-9a-f]{64})"', page).group(1)
    bad = client.post(reverse("sample-sign", args=[reviewable.pk]), {"password": "nope", "result_sha256": shown})
    assert bad.status_code == 400 and "password is not correct" in bad.content.decode()
    ok = client.post(reverse("sample-sign", args=[reviewable.pk]), {"password": PASSWORD, "result_sha256": shown,
                                                                    "meaning": "reviewed_and_approved"})
    assert ok.status_code == 302
    detail = client.get(ok["Location"]).content.decode()
    assert "Download PDF report" in detail and "Version 1" in detail


def test_worklist_is_stat_first_then_oldest(client, doctor, technician, files):
    now = timezone.now()
    old_routine = make_classified_sample(technician=technician, files=files[:1], ai_classes=AI[:1])
    new_stat = make_classified_sample(technician=technician, files=files[1:2], ai_classes=AI[1:2])
    old_stat = make_classified_sample(technician=technician, files=files[2:3], ai_classes=AI[2:3])
    for s, prio, hours in ((old_routine, "routine", 10), (new_stat, "stat", 1), (old_stat, "stat", 5)):
        type(s).objects.filter(pk=s.pk).update(priority=prio, received_at=now - datetime.timedelta(hours=hours))
    SampleFactory(status=SampleStatus.REGISTERED)  # not in the worklist
    assert list(rs.worklist()) == [old_stat, new_stat, old_routine]
    client.force_login(doctor)
    page = client.get(reverse("worklist")).content.decode()
    assert page.index(old_stat.accession_number) < page.index(new_stat.accession_number) < page.index(
        old_routine.accession_number)
    filtered = client.get(reverse("worklist"), {"status": "signed"}).content.decode()
    assert old_stat.accession_number not in filtered


def test_agreement_and_export_of_confirmed_cells(client, doctor, admin_user, reviewable, tmp_path):
    final = ["NEUTROPHIL", "LYMPHOCYTE", "LYMPHOCYTE", "MONOCYTE", "EXCLUDED", "NEUTROPHIL"]
    _review_all(doctor, reviewable, final)
    reviews.sample_sign(actor=doctor, sample=reviewable, password=PASSWORD)
    (table,) = rs.agreement_by_model_version()
    assert table.model_version == "test-model"
    assert table.matrix["NEUTROPHIL"]["LYMPHOCYTE"] == 1 and table.matrix["NEUTROPHIL"]["NEUTROPHIL"] == 2
    assert table.matrix["EOSINOPHIL"]["EXCLUDED"] == 1
    assert table.agreed == 4 and table.total == 6
    assert table.per_class["NEUTROPHIL"] == pytest.approx(2 / 3)
    client.force_login(admin_user)
    assert "4 of 6 cells agreed" in client.get(reverse("agreement")).content.decode()

    out = io.StringIO()
    call_command("export_reviewed_cells", "--out", str(tmp_path / "export"), stdout=out)
    assert "Exported 5" in out.getvalue()
    exported = {p.parent.name: len(list(p.parent.iterdir())) for p in (tmp_path / "export").glob("*/*")}
    assert exported == {"NEUTROPHIL": 2, "LYMPHOCYTE": 2, "MONOCYTE": 1}
