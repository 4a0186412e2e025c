"""Issue 13, item 8: reference ranges and H/L flags (review, PDF, FHIR, sample page), the cells
examined and excluded, the previous values on an amended report, and percentages that add up."""
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from pypdf import PdfReader

from audit.models import AuditEvent
from cases.errors import NotAllowed
from review import selectors as rs
from review import services as reviews
from review.models import ReferenceRange
from review.reports import INTERPRETATION_SYSTEM, LOINC_ABSOLUTE, fhir_diagnostic_report, render_pdf

from ..api.reviewing import AI, review_all, reviewable_sample
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

# 1 eosinophil of 6 cells with a WBC of 11.70 ×10⁹/L: 1.95 ×10⁹/L (above 0.02-0.50) and 16.7 % (above 1-6).
WBC = Decimal("11.70")


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def signed(technician, doctor):
    sample = reviewable_sample(technician, wbc_count=WBC)
    review_all(doctor, sample, final=[*AI[:5], "EXCLUDED"])
    signature = reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    return sample, signature


def test_percentages_total_exactly_100_by_largest_remainder():
    # 5 and 11 of 16: rounded one by one 31.3 + 68.8 = 100.1; by largest remainder 31.2 + 68.8 = 100.0.
    counts = {"EOSINOPHIL": 0, "LYMPHOCYTE": 0, "MONOCYTE": 0, "NEUTROPHIL": 5, "BASOPHIL": 11}
    assert rs.percentages(counts) == {
        "EOSINOPHIL": Decimal("0.0"), "LYMPHOCYTE": Decimal("0.0"), "MONOCYTE": Decimal("0.0"),
        "NEUTROPHIL": Decimal("31.2"), "BASOPHIL": Decimal("68.8"),
    }
    assert sum(rs.percentages({"a": 1, "b": 1, "c": 1}).values()) == Decimal("100.0")  # 33.4 + 33.3 + 33.3
    assert rs.percentages({"a": 0}) == {}


def test_adult_reference_ranges_are_seeded_with_their_source():
    ranges = {r.cell_class: r for r in ReferenceRange.objects.all()}
    assert set(ranges) == {"EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL"}
    eos = ranges["EOSINOPHIL"]
    assert (eos.absolute_low, eos.absolute_high) == (Decimal("0.02"), Decimal("0.50"))
    assert (ranges["NEUTROPHIL"].absolute_low, ranges["NEUTROPHIL"].absolute_high) == (Decimal("2.00"), Decimal("7.00"))
    assert all("Dacie and Lewis Practical Haematology, 12th ed." in r.source for r in ranges.values())


def test_eosinophilia_is_flagged_high_in_the_review_the_pdf_and_fhir(client, doctor, signed):
    sample, signature = signed
    eos = next(r for r in signature.snapshot["differential"]["rows"] if r["class"] == "EOSINOPHIL")
    assert (eos["absolute"], eos["absolute_flag"], eos["final_percent"], eos["percent_flag"]) == (
        "2.34", "H", "20.0", "H")  # 1 of the 5 counted (one excluded): 11.70 / 5
    neutrophils = next(r for r in signature.snapshot["differential"]["rows"] if r["class"] == "NEUTROPHIL")
    # 2 of 5: 40.0 % is the lower limit itself, inside the range (4.68 ×10⁹/L too): no flag.
    assert (neutrophils["final_percent"], neutrophils["percent_flag"], neutrophils["absolute_flag"]) == ("40.0", "", "")

    text = _pdf_text(render_pdf(sample=sample, signature=signature))
    assert "2.34 H" in text and "20.0 H" in text and "0.02–0.50" in text
    assert "Dacie and Lewis" in text

    bundle = fhir_diagnostic_report(sample=sample, signature=signature)
    observations = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in bundle["entry"][2:]}
    absolute = observations[LOINC_ABSOLUTE["EOSINOPHIL"][0]]
    assert absolute["interpretation"][0]["coding"][0] == {"system": INTERPRETATION_SYSTEM, "code": "H",
                                                          "display": "High"}
    assert absolute["referenceRange"][0]["low"]["value"] == 0.02
    assert absolute["referenceRange"][0]["high"]["value"] == 0.5
    in_range = observations[LOINC_ABSOLUTE["NEUTROPHIL"][0]]
    assert "interpretation" not in in_range and in_range["referenceRange"][0]["high"]["value"] == 7.0


def test_review_differential_shows_flags_and_ranges(client, doctor, technician):
    sample = reviewable_sample(technician, wbc_count=WBC)
    review_all(doctor, sample)
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[sample.pk])).content.decode()
    eos_row = page[page.index('<tr data-class="EOSINOPHIL">'):page.index('<tr data-class="LYMPHOCYTE">')]
    assert '1.95 <strong class="flag">H<span class="visually-hidden"> (high)</span></strong>' in eos_row
    assert "0.02–0.50" in eos_row and "Dacie and Lewis" in page


def test_report_states_the_cells_examined_and_excluded(signed):
    sample, signature = signed
    text = _pdf_text(render_pdf(sample=sample, signature=signature))
    assert "Cells examined: 6; counted in the differential: 5; excluded by the reviewer: 1." in text
    assert "Total counted\n5\n100.0" in text  # the printed total is the sum of the printed percentages


def test_sample_page_shows_the_signed_result_with_flags(client, doctor, signed):
    sample, _ = signed
    client.force_login(doctor)
    page = client.get(reverse("sample-detail", args=[sample.pk])).content.decode()
    assert 'class="grid signed-differential"' in page
    eos_row = page[page.index('<tr data-class="EOSINOPHIL">'):page.index('<tr data-class="LYMPHOCYTE">')]
    assert "2.34" in eos_row and '<strong class="flag">H' in eos_row
    assert "Cells examined: 6; counted: 5; excluded by the reviewer: 1." in page


def test_amended_report_shows_the_previous_values_beside_the_new(client, doctor, signed):
    sample, first = signed
    reviews.sample_amend(actor=doctor, sample=sample, reason="Eosinophil was a neutrophil")
    eosinophil = sample.images.order_by("pk")[4]
    reviews.cell_review(actor=doctor, image=eosinophil, final_class="NEUTROPHIL")
    second = reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    result = rs.signed_result(signature=second)
    eos = next(r for r in result.rows if r.cell_class == "EOSINOPHIL")
    assert (eos.percent, eos.previous_percent, eos.absolute, eos.previous_absolute) == ("0.0", "20.0", "0.00", "2.34")
    assert eos.changed and eos.absolute_flag == "L"
    text = _pdf_text(render_pdf(sample=sample, signature=second))
    assert "v1 %" in text and "Previous values: version 1" in text
    client.force_login(doctor)
    page = client.get(reverse("sample-detail", args=[sample.pk])).content.decode()
    assert "v1 ×10⁹/L" in page and "Amended: columns v1 show the values signed by" in page


def test_a_signed_report_keeps_the_ranges_it_was_signed_with(admin_user, signed):
    sample, signature = signed
    eos = ReferenceRange.objects.get(cell_class="EOSINOPHIL")
    reviews.reference_range_update(actor=admin_user, reference_range=eos, percent_low=Decimal("1.0"),
                                   percent_high=Decimal("30.0"), absolute_low=Decimal("0.02"),
                                   absolute_high=Decimal("5.00"), source="Local study 2026")
    text = _pdf_text(render_pdf(sample=sample, signature=signature))
    assert "2.34 H" in text and "0.02–0.50" in text and "Local study" not in text


def test_reference_ranges_are_changed_by_admins_only_and_audited(admin_user, doctor):
    eos = ReferenceRange.objects.get(cell_class="EOSINOPHIL")
    values = {"percent_low": Decimal("1.0"), "percent_high": Decimal("7.0"), "absolute_low": Decimal("0.04"),
              "absolute_high": Decimal("0.40"), "source": "Local reference study, 2026"}
    with pytest.raises(NotAllowed):
        reviews.reference_range_update(actor=doctor, reference_range=eos, **values)
    with pytest.raises(ValidationError) as bad:
        reviews.reference_range_update(actor=admin_user, reference_range=eos,
                                       **{**values, "absolute_low": Decimal("0.50"), "source": " "})
    assert set(bad.value.error_dict) == {"absolute_high", "source"}
    reviews.reference_range_update(actor=admin_user, reference_range=eos, **values)
    eos.refresh_from_db()
    assert (eos.absolute_low, eos.source) == (Decimal("0.04"), "Local reference study, 2026")
    event = AuditEvent.objects.filter(object_type="review.referencerange", action="update").get()
    assert event.actor_id == admin_user.pk and event.new_values["absolute_low"] == "0.04"


def test_admins_edit_reference_ranges_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    eos = ReferenceRange.objects.get(cell_class="EOSINOPHIL")
    url = reverse("admin:review_referencerange_change", args=[eos.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"percent_low": "1.0", "percent_high": "6.0", "absolute_low": "0.02",
                                 "absolute_high": "0.60", "source": "Lab study"})
    assert response.status_code == 302
    eos.refresh_from_db()
    assert eos.absolute_high == Decimal("0.60")
