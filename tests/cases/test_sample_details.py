"""Issue 13, items 2 and 7: the WBC count's plausible range, correcting and cancelling a sample,
the ordering details and external number, searching samples and patients, likely duplicate
patients, and the barcode label."""
from __future__ import annotations

import datetime
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from pypdf import PdfReader
from rest_framework.test import APIClient

from accounts.roles import Role
from audit.models import AuditEvent
from cases import labels, selectors, services
from cases.errors import InvalidState, NotAllowed
from cases.models import Patient, Sample, SampleStatus
from review import services as reviews

from ..factories import PASSWORD, PatientFactory, UserFactory, image_bytes, make_classified_sample

pytestmark = pytest.mark.django_db


def _register(technician, patient, **extra):
    return services.sample_create(
        actor=technician, patient=patient, collected_at=timezone.now() - datetime.timedelta(hours=1),
        specimen_type="peripheral_blood", stain="mgg", priority="routine", **extra,
    )


# Item 2: the WBC count ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [Decimal("-3"), Decimal("0"), Decimal("500.01"), Decimal("9999")])
def test_sample_create_refuses_an_implausible_wbc_count(technician, patient, value):
    with pytest.raises(ValidationError) as err:
        _register(technician, patient, wbc_count=value)
    assert "wbc_count" in err.value.message_dict
    assert not Sample.objects.exists()


@pytest.mark.parametrize("value", [Decimal("0.01"), Decimal("7.5"), Decimal("500")])
def test_sample_create_accepts_a_plausible_wbc_count(technician, patient, value):
    assert _register(technician, patient, wbc_count=value).wbc_count == value


def test_database_refuses_a_negative_wbc_count_from_any_writer(sample):
    with pytest.raises(IntegrityError), transaction.atomic():
        Sample.objects.filter(pk=sample.pk).update(wbc_count=Decimal("-3"))


def test_sample_form_shows_the_wbc_error_on_its_field(client, technician, patient):
    client.force_login(technician)
    response = client.post(
        reverse("sample-create", kwargs={"patient_pk": patient.pk}),
        {"collected_at": "2026-01-05T08:00", "specimen_type": "peripheral_blood", "stain": "mgg",
         "priority": "routine", "wbc_count": "-3"},
    )
    assert response.status_code == 400
    assert "greater than 0" in " ".join(response.context["form"].errors["wbc_count"])
    assert not Sample.objects.exists()


def test_api_refuses_a_negative_wbc_count_on_the_field(technician, patient):
    api = APIClient()
    api.force_authenticate(technician)
    response = api.post(reverse("api:sample-list"), {"patient": patient.pk, "collected_at": "2026-01-05T08:00:00Z",
                                                     "wbc_count": "-3"}, format="json")
    assert response.status_code == 400
    assert "wbc_count" in response.json()


# Item 2: correcting a sample ------------------------------------------------------------------


def test_sample_update_corrects_details_and_audits_the_reason(technician, patient):
    sample = _register(technician, patient, wbc_count=Decimal("3"))
    services.sample_update(actor=technician, sample=sample, reason="typo on the request form",
                           wbc_count=Decimal("4.5"), requesting_ward=" ICU ")
    sample.refresh_from_db()
    assert (sample.wbc_count, sample.requesting_ward) == (Decimal("4.50"), "ICU")
    event = AuditEvent.objects.filter(object_type="cases.sample", action="update").latest("pk")
    assert event.reason == "typo on the request form"
    assert Decimal(event.old_values["wbc_count"]) == 3 and Decimal(event.new_values["wbc_count"]) == Decimal("4.5")


def test_sample_update_applies_the_same_rules_as_registration(technician, patient):
    sample = _register(technician, patient)
    with pytest.raises(ValidationError) as err:
        services.sample_update(actor=technician, sample=sample, wbc_count=Decimal("-3"))
    assert "wbc_count" in err.value.message_dict
    with pytest.raises(ValidationError) as err:
        tomorrow = timezone.now() + datetime.timedelta(days=1)
        services.sample_update(actor=technician, sample=sample, collected_at=tomorrow)
    assert "collected_at" in err.value.message_dict
    with pytest.raises(ValueError):
        services.sample_update(actor=technician, sample=sample, patient=PatientFactory())


def test_only_technicians_correct_samples(doctor, technician, patient):
    sample = _register(technician, patient)
    with pytest.raises(NotAllowed):
        services.sample_update(actor=doctor, sample=sample, clinical_notes="x")


def test_a_signed_sample_cannot_be_corrected(technician):
    sample = make_classified_sample(technician=technician, files=[("a.png", image_bytes())], ai_classes=["NEUTROPHIL"])
    signer = UserFactory(role=Role.DOCTOR)
    reviews.cell_review(actor=signer, image=sample.images.get(), final_class="NEUTROPHIL")
    reviews.sample_sign(actor=signer, sample=sample, password=PASSWORD, count_override_reason="a test sample")
    with pytest.raises(InvalidState):
        services.sample_update(actor=technician, sample=sample, wbc_count=Decimal("5"))


def test_sample_edit_page_saves_only_what_changed(client, technician, patient):
    sample = _register(technician, patient, wbc_count=Decimal("3"))
    client.force_login(technician)
    form = client.get(reverse("sample-edit", kwargs={"pk": sample.pk})).context["form"]
    data = {k: ("" if v is None else v) for k, v in form.initial.items()}
    data.update(wbc_count="6.1", ordering_physician="Dr Who", reason="phoned by the ward")
    response = client.post(reverse("sample-edit", kwargs={"pk": sample.pk}), data)
    assert response.status_code == 302
    sample.refresh_from_db()
    assert (sample.wbc_count, sample.ordering_physician) == (Decimal("6.10"), "Dr Who")
    event = AuditEvent.objects.filter(object_type="cases.sample", action="update").latest("pk")
    assert set(event.new_values) == {"wbc_count", "ordering_physician"}


def test_sample_edit_page_shows_the_service_error_on_the_field(client, technician, patient):
    sample = _register(technician, patient)
    client.force_login(technician)
    form = client.get(reverse("sample-edit", kwargs={"pk": sample.pk})).context["form"]
    data = {k: ("" if v is None else v) for k, v in form.initial.items()} | {"wbc_count": "-3"}
    response = client.post(reverse("sample-edit", kwargs={"pk": sample.pk}), data)
    assert response.status_code == 400
    assert response.context["form"].errors["wbc_count"]


def test_api_patch_corrects_a_sample(technician, patient):
    sample = _register(technician, patient)
    api = APIClient()
    api.force_authenticate(technician)
    url = reverse("api:sample-detail", kwargs={"pk": sample.pk})
    response = api.patch(url, {"requesting_ward": "Haematology 2", "reason": "ward moved"}, format="json")
    assert response.status_code == 200 and response.json()["requesting_ward"] == "Haematology 2"
    assert api.patch(url, {"wbc_count": "-3"}, format="json").json().keys() == {"wbc_count"}


# Item 2: cancelling a sample ------------------------------------------------------------------


def test_cancel_page_asks_for_a_reason_then_cancels(client, technician, patient):
    sample = _register(technician, patient)
    client.force_login(technician)
    url = reverse("sample-cancel", kwargs={"pk": sample.pk})
    page = client.get(url)
    assert page.status_code == 200 and "Cancel the sample" in page.content.decode()
    assert client.post(url, {"reason": ""}).status_code == 400
    sample.refresh_from_db()
    assert sample.status == SampleStatus.REGISTERED
    assert client.post(url, {"reason": "clotted"}).status_code == 302
    sample.refresh_from_db()
    assert sample.status == SampleStatus.CANCELLED
    event = AuditEvent.objects.filter(object_type="cases.sample", action="update").latest("pk")
    assert event.reason == "clotted" and event.new_values["status"] == "cancelled"


def test_sample_page_links_edit_cancel_history_and_label_by_role(client, technician, doctor, admin_user, sample):
    links = [reverse(n, kwargs={"pk": sample.pk}) for n in ("sample-edit", "sample-cancel")]
    always = [reverse(n, kwargs={"pk": sample.pk}) for n in ("sample-history", "sample-label", "sample-barcode")]
    for user, shown in ((technician, links), (doctor, links[1:]), (admin_user, [])):
        client.force_login(user)
        body = client.get(reverse("sample-detail", kwargs={"pk": sample.pk})).content.decode()
        for url in always + shown:
            assert url in body, (user, url)
        for url in set(links) - set(shown):
            assert url not in body, (user, url)


def test_a_cancelled_sample_cannot_be_reviewed_signed_or_cancelled_again(client, technician, doctor):
    sample = make_classified_sample(technician=technician, files=[("a.png", image_bytes())], ai_classes=["NEUTROPHIL"])
    services.sample_cancel(actor=doctor, sample=sample, reason="wrong patient")
    with pytest.raises(InvalidState):
        reviews.cell_review(actor=doctor, image=sample.images.get(), final_class="NEUTROPHIL")
    assert reviews.sign_off_blockers(sample=Sample.objects.get(pk=sample.pk))
    client.force_login(technician)
    page = client.get(reverse("sample-cancel", kwargs={"pk": sample.pk}))
    assert "cannot be cancelled" in page.content.decode()
    assert client.post(reverse("sample-cancel", kwargs={"pk": sample.pk}), {"reason": "again"}).status_code == 409


def test_api_cancel_needs_a_reason_and_a_role(technician, admin_user, patient):
    sample = _register(technician, patient)
    api = APIClient()
    url = reverse("api:sample-cancel", kwargs={"pk": sample.pk})
    api.force_authenticate(admin_user)
    assert api.post(url, {"reason": "x"}, format="json").status_code == 403
    api.force_authenticate(technician)
    assert api.post(url, {}, format="json").status_code == 400
    response = api.post(url, {"reason": "duplicate request"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(url, {"reason": "again"}, format="json").status_code == 409


# Item 7: ordering details, external number, searching -----------------------------------------


def test_external_accession_is_unique_when_given(technician, patient):
    first = _register(technician, patient, external_accession=" LIS-0042 ", ordering_physician="Dr Okoye",
                      requesting_ward="ICU")
    assert first.external_accession == "LIS-0042"
    _register(technician, patient)  # blank numbers never clash
    _register(technician, patient)
    with pytest.raises(ValidationError) as err:
        _register(technician, patient, external_accession="LIS-0042")
    assert first.accession_number in err.value.message_dict["external_accession"][0]


def test_sample_list_finds_samples_by_accession_or_external_number(client, technician, patient):
    wanted = _register(technician, patient, external_accession="BC-778899")
    other = _register(technician, patient)
    client.force_login(technician)
    for query in (wanted.accession_number, wanted.accession_number.lower()[-4:], "778899"):
        page = client.get(reverse("sample-list"), {"q": query})
        found = list(page.context["page"])
        assert wanted in found, query
        if query != wanted.accession_number.lower()[-4:]:
            assert other not in found, query
    api = APIClient()
    api.force_authenticate(technician)
    rows = api.get(reverse("api:sample-list"), {"search": "BC-7788"}).json()["results"]
    assert [r["accession_number"] for r in rows] == [wanted.accession_number]


@pytest.mark.parametrize("query", ["Adaeze Okafor", "Okafor Adaeze", "okafor, ADA", "ADAEZE", "kafo"])
def test_patient_search_by_full_name_in_any_order(client, technician, query):
    adaeze = PatientFactory(family_name="Okafor", given_name="Adaeze")
    PatientFactory(family_name="Okafor", given_name="Chidi")
    PatientFactory(family_name="Adams", given_name="Eze")
    found = list(selectors.patient_search(query=query))
    assert adaeze in found
    if " " in query.strip(", "):
        assert found == [adaeze]
    client.force_login(technician)
    assert adaeze in client.get(reverse("patient-list"), {"q": query}).context["page"]
    api = APIClient()
    api.force_authenticate(technician)
    assert adaeze.mrn in [p["mrn"] for p in api.get(reverse("api:patient-list"), {"search": query}).json()["results"]]


# Item 7: likely duplicate patients -------------------------------------------------------------

PERSON = {"family_name": "Okafor", "given_name": "Adaeze", "date_of_birth": datetime.date(1984, 3, 9), "sex": "F"}


def test_patient_create_warns_of_a_likely_duplicate_until_confirmed(technician):
    first = services.patient_create(actor=technician, mrn="MRN-1", **PERSON)
    with pytest.raises(ValidationError) as err:
        services.patient_create(actor=technician, mrn="MRN-2", **PERSON | {"family_name": " OKAFOR "})
    assert "MRN-1" in err.value.message_dict["confirm_duplicate"][0]
    second = services.patient_create(actor=technician, mrn="MRN-2", confirm_duplicate=True, **PERSON)
    assert {first.pk, second.pk} == set(Patient.objects.values_list("pk", flat=True))
    services.patient_create(actor=technician, mrn="MRN-3", **PERSON | {"date_of_birth": datetime.date(1984, 3, 10)})


def test_patient_page_shows_the_existing_patient_and_asks_to_confirm(client, technician):
    existing = services.patient_create(actor=technician, mrn="MRN-1", **PERSON)
    client.force_login(technician)
    data = {"mrn": "MRN-2", "family_name": "okafor", "given_name": "adaeze", "date_of_birth": "1984-03-09", "sex": "F"}
    response = client.post(reverse("patient-create"), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert reverse("patient-detail", kwargs={"pk": existing.pk}) in body
    assert 'type="checkbox" name="confirm_duplicate"' in body
    assert Patient.objects.count() == 1
    response = client.post(reverse("patient-create"), data | {"confirm_duplicate": "on"})
    assert response.status_code == 302 and Patient.objects.count() == 2


def test_api_patient_create_needs_confirm_duplicate_for_a_likely_duplicate(technician):
    services.patient_create(actor=technician, mrn="MRN-1", **PERSON)
    api = APIClient()
    api.force_authenticate(technician)
    body = {"mrn": "MRN-2", "family_name": "Okafor", "given_name": "Adaeze", "date_of_birth": "1984-03-09"}
    response = api.post(reverse("api:patient-list"), body, format="json")
    assert response.status_code == 400 and "confirm_duplicate" in response.json()
    assert api.post(reverse("api:patient-list"), body | {"confirm_duplicate": True}, format="json").status_code == 201


# Item 7: the barcode label ----------------------------------------------------------------------


def test_barcode_is_code_128_of_the_accession_number():
    modules = labels.barcode_modules("HV-2026-000001")
    assert modules.startswith("11010010000")  # START B
    assert modules.endswith("1100011101011")  # STOP
    image = Image.open(io.BytesIO(labels.barcode_png("HV-2026-000001")))
    assert image.format == "PNG" and image.width > image.height


def test_label_pdf_is_62_by_29_mm_with_the_patient_and_accession(technician, patient):
    sample = _register(technician, patient)
    page = PdfReader(io.BytesIO(labels.sample_label_pdf(sample))).pages[0]
    width_mm, height_mm = (round(float(v) / 72 * 25.4, 1) for v in (page.mediabox.width, page.mediabox.height))
    assert (width_mm, height_mm) == (62.0, 29.0)
    text = page.extract_text()
    for expected in (sample.accession_number, patient.full_name, patient.mrn,
                     f"{timezone.localtime(sample.collected_at):%Y-%m-%d %H:%M}"):
        assert expected in text


def test_label_downloads_are_audited_and_typed(client, doctor, technician, patient):
    sample = _register(technician, patient)
    client.force_login(doctor)
    png = client.get(reverse("sample-barcode", kwargs={"pk": sample.pk}))
    assert png["Content-Type"] == "image/png" and png["Cache-Control"] == "private, no-store"
    pdf = client.get(reverse("sample-label", kwargs={"pk": sample.pk}))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    downloads = AuditEvent.objects.filter(action="download", object_type="cases.sample", object_id=str(sample.pk))
    assert sorted(downloads.values_list("reason", flat=True)) == ["barcode downloaded", "label downloaded"]
