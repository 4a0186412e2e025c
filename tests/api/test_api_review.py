"""Doctor review through the API: worklist, review, sign-off, amendments, reports, agreement."""
import datetime
import io
import json
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from accounts.roles import Role
from api.throttling import HVScopedRateThrottle
from audit.models import AuditEvent
from cases.models import SampleStatus
from review import services as reviews
from review.models import CellReview, Signature

from ..factories import PASSWORD, SampleFactory, UserFactory
from . import images as img
from .conftest import token_client
from .reviewing import AI, review_all, reviewable_sample, signed_sample

pytestmark = pytest.mark.django_db


def _url(name, sample, *args):
    return reverse(f"api:{name}", args=[sample.pk, *args])


@pytest.fixture
def reviewable(technician):
    return reviewable_sample(technician, wbc_count=Decimal("8.00"))


def _sign(client, sample, password=PASSWORD):
    return client.post(_url("sample-sign", sample), {"password": password, "meaning": "reviewed_and_approved"},
                       format="json")


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


# Worklist and review state ---------------------------------------------------------


def test_worklist_is_stat_first_then_oldest_with_counts(doctor_api, technician):
    now = timezone.now()
    old_routine = reviewable_sample(technician, cells=1, first_image=0)
    new_stat = reviewable_sample(technician, cells=1, first_image=1)
    old_stat = reviewable_sample(technician, cells=6, first_image=2)
    received = {old_routine: now - datetime.timedelta(days=3), new_stat: now - datetime.timedelta(hours=1),
                old_stat: now - datetime.timedelta(days=2)}
    for sample, priority in ((old_routine, "routine"), (new_stat, "stat"), (old_stat, "stat")):
        type(sample).objects.filter(pk=sample.pk).update(priority=priority, received_at=received[sample])
    SampleFactory(status=SampleStatus.REGISTERED)  # not awaiting review

    response = doctor_api.get(reverse("api:worklist"))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [old_stat.pk, new_stat.pk, old_routine.pk]
    first = results[0]
    assert (first["image_count"], first["classified_count"], first["reviewed_count"], first["unidentified_count"]) == (
        6, 6, 0, 1)
    assert first["review_url"].endswith(_url("sample-review", old_stat))

    def day(sample):
        return timezone.localdate(received[sample]).isoformat()

    worklist = reverse("api:worklist")
    assert [r["id"] for r in doctor_api.get(worklist, {"received_to": day(old_routine)}).json()["results"]] == [
        old_routine.pk]
    assert [r["id"] for r in doctor_api.get(worklist, {"received_from": day(old_stat)}).json()["results"]] == [
        old_stat.pk, new_stat.pk]
    assert doctor_api.get(reverse("api:worklist"), {"status": "signed"}).json()["results"] == []
    assert doctor_api.get(reverse("api:worklist"), {"status": "registered"}).status_code == 400
    assert doctor_api.get(reverse("api:worklist"), {"received_from": "not-a-date"}).status_code == 400


def test_review_state_has_cells_differential_and_blockers(doctor_api, reviewable):
    response = doctor_api.get(_url("sample-review", reviewable))
    assert response.status_code == 200
    body = response.json()
    assert body["sample"]["accession_number"] == reviewable.accession_number and body["can_edit"] is True
    assert [g["key"] for g in body["groups"]] == ["UNIDENTIFIED", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    cells = {c["image_id"]: c for c in body["cells"]}
    assert len(cells) == 6
    unidentified = cells[body["groups"][0]["image_ids"][0]]
    assert unidentified["unidentified"] is True and unidentified["ai_class"] == "NEUTROPHIL"
    assert unidentified["confidence"] == pytest.approx(0.45)
    assert set(unidentified["probabilities"]) == {"EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"}
    assert unidentified["final_class"] is None and unidentified["comment"] == ""
    assert unidentified["file_url"].endswith(reverse("api:image-file", args=[unidentified["image_id"]]))
    assert body["differential"]["ai_total"] == 6 and body["differential"]["unreviewed"] == 6
    assert body["differential"]["wbc_count"] == "8.00"
    assert "6 cell(s) are not reviewed" in body["sign_off_blockers"]
    assert "1 cell(s) remain in the unidentified group" in body["sign_off_blockers"]
    assert doctor_api.get(reverse("api:sample-review", args=[987654])).status_code == 404


# Reviewing cells ------------------------------------------------------------------


def test_confirm_group_and_reclassify_through_the_api(doctor_api, doctor, reviewable, monkeypatch):
    response = doctor_api.post(_url("group-confirm", reviewable), {"ai_class": "NEUTROPHIL"}, format="json")
    assert response.status_code == 200
    assert response.json()["confirmed"] == 2  # the unidentified neutrophil needs its own look
    assert CellReview.objects.filter(final_class="NEUTROPHIL").count() == 2
    unidentified = doctor_api.post(_url("group-confirm", reviewable), {"ai_class": "UNIDENTIFIED"}, format="json")
    assert unidentified.status_code == 400

    calls = []
    real = reviews.cell_review
    monkeypatch.setattr("review.services.cell_review", lambda **kw: calls.append(kw) or real(**kw))
    image = reviewable.images.order_by("pk")[2]  # AI: lymphocyte
    response = doctor_api.post(_url("cell-review", reviewable, image.pk),
                               {"final_class": "MONOCYTE", "comment": "atypical?"}, format="json")
    assert response.status_code == 200
    assert calls and calls[0]["actor"] == doctor  # the service did the write
    body = response.json()
    assert body["cell"] == {**body["cell"], "image_id": image.pk, "final_class": "MONOCYTE", "comment": "atypical?",
                            "ai_class": "LYMPHOCYTE", "reviewed_by": doctor.get_printed_name()}
    rows = {r["class"]: r for r in body["differential"]["rows"]}
    assert rows["MONOCYTE"]["final_count"] == 1 and rows["NEUTROPHIL"]["final_count"] == 2
    assert rows["MONOCYTE"]["final_percent"] == "33.3" and rows["MONOCYTE"]["absolute"] == "2.67"
    assert body["differential"]["unreviewed"] == 3
    event = AuditEvent.objects.filter(object_type="review.cellreview", object_id=str(CellReview.objects.get(
        image=image).pk), action="create").get()
    assert event.actor_id == doctor.pk and event.new_values["final_class"] == "MONOCYTE"

    excluded = doctor_api.post(_url("cell-review", reviewable, image.pk), {"final_class": "EXCLUDED"}, format="json")
    assert excluded.status_code == 200
    assert excluded.json()["cell"]["comment"] == "atypical?"  # kept when omitted
    assert excluded.json()["differential"]["excluded"] == 1


def test_cell_review_input_and_existence_checks(doctor_api, reviewable, technician):
    image = reviewable.images.order_by("pk").first()
    url = _url("cell-review", reviewable, image.pk)
    bad_class = doctor_api.post(url, {"final_class": "PLATELET"}, format="json")
    assert bad_class.status_code == 400 and "final_class" in bad_class.json()
    malformed = doctor_api.post(url, '{"final_class": ', content_type="application/json")
    assert malformed.status_code == 400 and "JSON parse error" in malformed.json()["detail"]
    other = reviewable_sample(technician, cells=1, first_image=8)
    foreign = doctor_api.post(_url("cell-review", other, image.pk), {"final_class": "MONOCYTE"}, format="json")
    assert foreign.status_code == 404  # the image belongs to another sample
    assert doctor_api.post(reverse("api:cell-review", args=[reviewable.pk, 987654]), {"final_class": "MONOCYTE"},
                           format="json").status_code == 404
    assert doctor_api.post(reverse("api:cell-review", args=[987654, image.pk]), {"final_class": "MONOCYTE"},
                           format="json").status_code == 404
    assert not CellReview.objects.exists()


def test_review_of_a_sample_not_awaiting_review_is_409(doctor_api, technician):
    from cases.services import images_upload

    sample = SampleFactory()
    image = images_upload(actor=technician, sample=sample, files=[("c.png", img.png(0))]).accepted[0]
    response = doctor_api.post(_url("cell-review", sample, image.pk), {"final_class": "MONOCYTE"}, format="json")
    assert response.status_code == 409 and "awaiting review" in response.json()["detail"]
    confirm = doctor_api.post(_url("group-confirm", sample), {"ai_class": "MONOCYTE"}, format="json")
    assert confirm.status_code == 409
    assert doctor_api.get(_url("sample-review", sample)).json()["can_edit"] is False
    assert not CellReview.objects.exists()


def test_sample_comment(doctor_api, reviewable):
    response = doctor_api.put(_url("sample-comment", reviewable), {"comment": "  Mild neutrophilia. "}, format="json")
    assert response.status_code == 200 and response.json() == {"comment": "Mild neutrophilia."}
    reviewable.refresh_from_db()
    assert reviewable.review_comment == "Mild neutrophilia."
    assert doctor_api.put(_url("sample-comment", reviewable), {}, format="json").status_code == 400
    assert doctor_api.post(_url("sample-comment", reviewable), {"comment": "x"}, format="json").status_code == 405


# Sign-off ------------------------------------------------------------------------


def test_sign_off_refused_while_cells_are_unreviewed_or_unidentified(doctor_api, doctor, reviewable):
    response = _sign(doctor_api, reviewable)
    assert response.status_code == 409
    assert "6 cell(s) are not reviewed" in response.json()["detail"]
    assert "6 cell(s) are not reviewed" in response.json()["sign_off_blockers"]
    doctor_api.post(_url("group-confirm", reviewable), {"ai_class": "NEUTROPHIL"}, format="json")
    images = list(reviewable.images.order_by("pk"))
    for i in (2, 3, 4):
        doctor_api.post(_url("cell-review", reviewable, images[i].pk), {"final_class": AI[i]}, format="json")
    response = _sign(doctor_api, reviewable)
    assert response.status_code == 409
    assert response.json()["sign_off_blockers"] == [
        "1 cell(s) remain in the unidentified group", "1 cell(s) are not reviewed"]
    assert not Signature.objects.exists()

    doctor_api.post(_url("cell-review", reviewable, images[5].pk), {"final_class": "MONOCYTE"}, format="json")
    assert doctor_api.get(_url("sample-review", reviewable)).json()["sign_off_blockers"] == []
    response = _sign(doctor_api, reviewable)
    assert response.status_code == 201
    body = response.json()
    signature = Signature.objects.get()
    assert body["version"] == 1 and body["is_amendment"] is False
    assert body["printed_name"] == doctor.get_printed_name() and body["signer"] == doctor.username
    assert body["meaning"] == "reviewed_and_approved"
    assert body["snapshot_sha256"] == signature.snapshot_sha256 and len(body["snapshot_sha256"]) == 64
    assert body["snapshot"]["accession_number"] == reviewable.accession_number
    assert datetime.datetime.fromisoformat(body["signed_at"].replace("Z", "+00:00")) == signature.signed_at
    assert body["report_url"].endswith(_url("sample-report-pdf", reviewable) + "?version=1")
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.SIGNED

    # A signed sample is locked.
    locked = doctor_api.post(_url("cell-review", reviewable, images[0].pk), {"final_class": "MONOCYTE"}, format="json")
    assert locked.status_code == 409 and "signed" in locked.json()["detail"]
    assert doctor_api.put(_url("sample-comment", reviewable), {"comment": "late"}, format="json").status_code == 409
    confirm = doctor_api.post(_url("group-confirm", reviewable), {"ai_class": "MONOCYTE"}, format="json")
    assert confirm.status_code == 409
    assert _sign(doctor_api, reviewable).status_code == 409
    assert Signature.objects.count() == 1


def test_sign_off_refused_with_a_wrong_password(doctor_api, doctor, reviewable):
    review_all(doctor, reviewable)
    response = _sign(doctor_api, reviewable, password="not-my-password")
    assert response.status_code == 400
    assert "password is not correct" in response.json()["detail"] and "password" in response.json()
    assert AuditEvent.objects.filter(action="signature_failed", actor_id=doctor.pk).exists()
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.AWAITING_REVIEW and not Signature.objects.exists()
    assert doctor_api.post(_url("sample-sign", reviewable), {"meaning": "reviewed_and_approved"},
                           format="json").status_code == 400
    assert doctor_api.post(_url("sample-sign", reviewable), {"password": PASSWORD, "meaning": "looked at it"},
                           format="json").status_code == 400
    malformed = doctor_api.post(_url("sample-sign", reviewable), "{not json", content_type="application/json")
    assert malformed.status_code == 400
    # One wrong password does not lock the doctor out: the right one still signs.
    assert _sign(doctor_api, reviewable).status_code == 201


def test_session_sign_off_needs_the_csrf_token(doctor, reviewable):
    review_all(doctor, reviewable)
    client = Client(enforce_csrf_checks=True)
    client.force_login(doctor)
    payload = {"password": PASSWORD}
    response = client.post(_url("sample-sign", reviewable), payload, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Signature.objects.exists()
    client.get(reverse("worklist"))  # a page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(_url("sample-sign", reviewable), payload, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_sign_off_refused_to_the_uploader():
    both = UserFactory(role=Role.TECHNICIAN)
    both.groups.add(*UserFactory(role=Role.DOCTOR).groups.all())
    sample = reviewable_sample(both, cells=2)
    client = token_client(both)
    for image, cls in zip(sample.images.order_by("pk"), AI, strict=False):
        response = client.post(_url("cell-review", sample, image.pk), {"final_class": cls}, format="json")
        assert response.status_code == 200
    response = _sign(client, sample)
    assert response.status_code == 409
    assert any("four-eyes" in reason for reason in response.json()["sign_off_blockers"])
    assert not Signature.objects.exists()
    assert _sign(token_client(UserFactory(role=Role.DOCTOR)), sample).status_code == 201


def test_review_and_sign_off_refused_to_technicians(tech_api, admin_api, doctor, reviewable):
    image = reviewable.images.order_by("pk").first()
    for client in (tech_api, admin_api):
        assert client.post(_url("cell-review", reviewable, image.pk), {"final_class": "MONOCYTE"},
                           format="json").status_code == 403
        confirm = client.post(_url("group-confirm", reviewable), {"ai_class": "NEUTROPHIL"}, format="json")
        assert confirm.status_code == 403
        assert client.get(_url("sample-review", reviewable)).status_code == 403
        assert client.get(reverse("api:worklist")).status_code == 403
    review_all(doctor, reviewable)
    response = _sign(tech_api, reviewable)
    assert response.status_code == 403
    assert not Signature.objects.exists()
    assert not CellReview.objects.exclude(reviewed_by=doctor).exists()


def test_sign_off_is_rate_limited_per_user(monkeypatch, doctor_api, doctor, reviewable):
    monkeypatch.setattr(HVScopedRateThrottle, "THROTTLE_RATES", {"api-sign": "2/min"})
    review_all(doctor, reviewable)
    statuses = [_sign(doctor_api, reviewable, password=f"wrong-{i}").status_code for i in range(3)]
    assert statuses == [400, 400, 429]
    assert _sign(doctor_api, reviewable).status_code == 429  # throttled before the password is checked
    assert _sign(token_client(UserFactory(role=Role.DOCTOR)), reviewable).status_code == 201  # another user


# Amendments and signed versions ---------------------------------------------------


def test_amendment_keeps_the_first_signature_and_needs_a_new_one(doctor_api, tech_api, doctor, reviewable):
    assert doctor_api.post(_url("sample-amend", reviewable), {"reason": "early"}, format="json").status_code == 409
    review_all(doctor, reviewable)
    doctor_api.put(_url("sample-comment", reviewable), {"comment": "Original comment"}, format="json")
    first = _sign(doctor_api, reviewable).json()

    assert doctor_api.post(_url("sample-amend", reviewable), {"reason": ""}, format="json").status_code == 400
    assert doctor_api.post(_url("sample-amend", reviewable), {}, format="json").status_code == 400
    assert tech_api.post(_url("sample-amend", reviewable), {"reason": "x"}, format="json").status_code == 403
    response = doctor_api.post(_url("sample-amend", reviewable), {"reason": "Cell 5 is a monocyte"}, format="json")
    assert response.status_code == 201
    assert response.json()["previous_version"] == 1 and response.json()["sample_status"] == "amended"
    assert response.json()["reason"] == "Cell 5 is a monocyte" and response.json()["requested_by"] == doctor.username
    reviewable.refresh_from_db()
    assert reviewable.status == SampleStatus.AMENDED
    # Still only the first signed version; the worklist shows the reopened sample.
    assert [s["version"] for s in tech_api.get(_url("sample-signatures", reviewable)).json()["results"]] == [1]
    assert reviewable.pk in [r["id"] for r in doctor_api.get(reverse("api:worklist")).json()["results"]]

    image = reviewable.images.order_by("pk")[4]
    doctor_api.post(_url("cell-review", reviewable, image.pk), {"final_class": "MONOCYTE"}, format="json")
    second = _sign(doctor_api, reviewable)
    assert second.status_code == 201
    assert second.json()["version"] == 2 and second.json()["is_amendment"] is True
    assert second.json()["amendment_reason"] == "Cell 5 is a monocyte"

    versions = tech_api.get(_url("sample-signatures", reviewable)).json()["results"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["snapshot_sha256"] == first["snapshot_sha256"]
    assert versions[0]["snapshot"] == first["snapshot"]
    original = {r["class"]: r["final_count"] for r in versions[0]["snapshot"]["differential"]["rows"]}
    amended = {r["class"]: r["final_count"] for r in versions[1]["snapshot"]["differential"]["rows"]}
    assert original["EOSINOPHIL"] == 1 and amended["EOSINOPHIL"] == 0
    assert amended["MONOCYTE"] == original["MONOCYTE"] + 1
    assert doctor_api.get(reverse("api:sample-signatures", args=[987654])).status_code == 404


# Reports -------------------------------------------------------------------------


def test_reports_of_an_unsigned_sample_are_404(client_for, reviewable):
    client = client_for(Role.TECHNICIAN.value)
    for name in ("sample-report-pdf", "sample-fhir"):
        response = client.get(_url(name, reviewable))
        assert response.status_code == 404 and response.json()["detail"]
    assert client.get(reverse("api:sample-report-pdf", args=[987654])).status_code == 404
    assert client.get(_url("sample-signatures", reviewable)).json()["results"] == []


def test_pdf_report_download(tech_api, doctor_api, doctor, technician, settings):
    sample = signed_sample(technician, doctor, cells=4, wbc_count=Decimal("8.00"))
    response = tech_api.get(_url("sample-report-pdf", sample))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{sample.accession_number}-v1.pdf"'
    text = _pdf_text(response.content)
    for expected in (sample.accession_number, sample.patient.mrn, settings.LAB_NAME, doctor.get_printed_name()):
        assert expected in text, expected
    assert "AMENDED" not in text
    event = AuditEvent.objects.filter(action="download", object_id=str(sample.pk), actor_id=technician.pk).get()
    assert "PDF report v1" in event.reason

    doctor_api.post(_url("sample-amend", sample), {"reason": "Typo in comment"}, format="json")
    assert doctor_api.get(_url("sample-report-pdf", sample), {"version": 2}).status_code == 404
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    amended = _pdf_text(tech_api.get(_url("sample-report-pdf", sample)).content)
    assert "AMENDED" in amended and "Typo in comment" in amended and sample.accession_number in amended
    original = tech_api.get(_url("sample-report-pdf", sample), {"version": 1})
    assert "AMENDED" not in _pdf_text(original.content)
    assert tech_api.get(_url("sample-report-pdf", sample), {"version": "abc"}).status_code == 400
    assert tech_api.get(_url("sample-report-pdf", sample), {"version": 0}).status_code == 400
    assert tech_api.get(_url("sample-report-pdf", sample), HTTP_ACCEPT="application/pdf").status_code == 200


def test_fhir_download(admin_api, admin_user, doctor, technician):
    sample = signed_sample(technician, doctor, cells=4, wbc_count=Decimal("8.00"))
    response = admin_api.get(_url("sample-fhir", sample))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    bundle = json.loads(response.content)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    report = bundle["entry"][0]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "final"
    assert report["identifier"][0]["value"] == sample.accession_number
    assert report["code"]["coding"][0]["code"] == "24318-8"
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(observations) == len(report["result"]) > 0
    assert AuditEvent.objects.filter(action="download", object_id=str(sample.pk), actor_id=admin_user.pk,
                                     reason__contains="FHIR").exists()
    assert admin_api.get(_url("sample-fhir", sample), HTTP_ACCEPT="application/fhir+json").status_code == 200


# Agreement -----------------------------------------------------------------------


def test_agreement_for_doctors_and_admins(doctor_api, admin_api, tech_api, doctor, technician):
    sample = reviewable_sample(technician)
    review_all(doctor, sample, ["NEUTROPHIL", "LYMPHOCYTE", "LYMPHOCYTE", "MONOCYTE", "EXCLUDED", "NEUTROPHIL"])
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    assert tech_api.get(reverse("api:agreement")).status_code == 403
    for client in (doctor_api, admin_api):
        response = client.get(reverse("api:agreement"))
        assert response.status_code == 200
        (table,) = response.json()
        assert table["model_version"] == "test-model"
        assert (table["agreed"], table["total"]) == (4, 6)
        assert table["overall"] == pytest.approx(4 / 6)
        assert table["matrix"]["NEUTROPHIL"]["LYMPHOCYTE"] == 1 and table["matrix"]["EOSINOPHIL"]["EXCLUDED"] == 1
        assert table["per_class"]["NEUTROPHIL"] == pytest.approx(2 / 3)


def test_openapi_documents_the_review_operations(doctor_api):
    schema = doctor_api.get(reverse("api:schema"), {"format": "json"}).json()
    paths = schema["paths"]
    sign = paths["/api/v1/samples/{id}/sign/"]["post"]
    assert {"201", "400", "401", "403", "404", "409", "429"} <= set(sign["responses"])
    assert sign["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/SignBlocked")
    assert "application/pdf" in paths["/api/v1/samples/{id}/report.pdf"]["get"]["responses"]["200"]["content"]
    assert "application/fhir+json" in paths["/api/v1/samples/{id}/fhir/"]["get"]["responses"]["200"]["content"]
    cell = paths["/api/v1/samples/{id}/images/{image_pk}/review/"]["post"]
    assert {"200", "400", "404", "409"} <= set(cell["responses"])
    worklist_params = {p["name"] for p in paths["/api/v1/worklist/"]["get"]["parameters"]}
    assert {"status", "received_from", "received_to", "page"} <= worklist_params
    assert "put" in paths["/api/v1/samples/{id}/comment/"]
