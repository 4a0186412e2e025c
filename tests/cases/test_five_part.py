"""The five-part differential: BASOPHIL everywhere the four classes appear, and signed
four-class reports unchanged."""

from decimal import Decimal

import pytest
from django.urls import reverse

from cases.cell_classes import CELL_CLASSES, EXCLUDED, FINAL_CLASS_CHOICES
from review import selectors as rs
from review import services as reviews
from review.models import Signature
from review.reports import LOINC_ABSOLUTE, LOINC_PERCENT, fhir_diagnostic_report, render_pdf

from ..factories import PASSWORD, make_classified_sample

pytestmark = pytest.mark.django_db

AI = ["NEUTROPHIL", "BASOPHIL", "LYMPHOCYTE", "BASOPHIL"]


@pytest.fixture
def sample(technician, cell_files):
    files = [(p.name, p.read_bytes()) for p in cell_files[: len(AI)]]
    return make_classified_sample(technician=technician, files=files, ai_classes=AI, wbc_count=Decimal("10.00"))


def test_one_definition_of_the_five_classes():
    from classifier.inference import OTHER
    from classifier.models import CellClass
    from training.labs import LABELS

    assert CELL_CLASSES == ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL")
    assert [c for c, _ in FINAL_CLASS_CHOICES] == [*CELL_CLASSES, EXCLUDED]
    assert tuple(CellClass.values) == CELL_CLASSES == rs.CLASSES
    assert LABELS == (*CELL_CLASSES, OTHER)
    for table in (LOINC_PERCENT, LOINC_ABSOLUTE):
        assert set(table) == set(CELL_CLASSES)
    assert LOINC_PERCENT["BASOPHIL"][0] == "30180-4" and LOINC_ABSOLUTE["BASOPHIL"][0] == "26444-0"


def test_basophils_get_a_gallery_group_a_differential_row_and_a_report_line(doctor, sample):
    groups = rs.review_groups(rows=rs.review_cells(sample=sample))
    assert [g.key for g in groups] == ["LYMPHOCYTE", "NEUTROPHIL", "BASOPHIL"]
    for image, cls in zip(
        sample.images.order_by("pk"), ["NEUTROPHIL", "BASOPHIL", "LYMPHOCYTE", "EOSINOPHIL"], strict=True
    ):
        reviews.cell_review(actor=doctor, image=image, final_class=cls)
    diff = rs.differential(rows=rs.review_cells(sample=sample), wbc_count=Decimal("10.00"))
    rows = {r.cell_class: r for r in diff.rows}
    assert [r.cell_class for r in diff.rows] == list(CELL_CLASSES)
    assert (rows["BASOPHIL"].ai_count, rows["BASOPHIL"].final_count) == (2, 1)
    assert rows["BASOPHIL"].final_percent == Decimal("25.0") and rows["BASOPHIL"].absolute == Decimal("2.50")
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    bundle = fhir_diagnostic_report(sample=sample, signature=Signature.objects.get())
    codes = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in bundle["entry"][2:]}
    assert codes["30180-4"]["valueQuantity"]["value"] == 25.0
    assert codes["26444-0"]["valueQuantity"]["value"] == 2.5


def test_review_key_5_is_basophil(client, doctor, sample):
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[sample.pk])).content.decode()
    assert "5 Basophil" in page
    # review.js takes its keys from these buttons: one list of classes, the server's.
    assert 'data-set-class="BASOPHIL" data-key="5"' in page
    assert 'data-set-class="EXCLUDED" data-key="0"' in page


def test_a_signed_four_class_report_stays_as_it_was_signed(doctor, technician, cell_files):
    """Reports render the snapshot taken at signing, never today's class list: a result signed
    before BASOPHIL existed keeps its four rows in the PDF and in FHIR."""
    files = [(p.name, p.read_bytes()) for p in cell_files[:2]]
    old = make_classified_sample(technician=technician, files=files, ai_classes=["NEUTROPHIL", "LYMPHOCYTE"])
    for image, cls in zip(old.images.order_by("pk"), ["NEUTROPHIL", "LYMPHOCYTE"], strict=True):
        reviews.cell_review(actor=doctor, image=image, final_class=cls)
    reviews.sample_sign(actor=doctor, sample=old, password=PASSWORD)
    signed = Signature.objects.get()
    # the snapshot as a four-class version of the app stored it (an unsaved copy: signatures are append-only)
    diff = signed.snapshot["differential"]
    four = [r for r in diff["rows"] if r["class"] != "BASOPHIL"]
    assert len(four) == 4
    old_sig = Signature(**{f.attname: getattr(signed, f.attname) for f in Signature._meta.concrete_fields})
    old_sig.snapshot = {**signed.snapshot, "differential": {**diff, "rows": four}}
    codes = {
        e["resource"]["code"]["coding"][0]["code"]
        for e in fhir_diagnostic_report(sample=old, signature=old_sig)["entry"][2:]
    }
    assert "30180-4" not in codes and "26444-0" not in codes and LOINC_PERCENT["NEUTROPHIL"][0] in codes
    import io

    from pypdf import PdfReader

    text = "".join(
        page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(sample=old, signature=old_sig))).pages
    )
    assert "Neutrophil" in text and "Basophil" not in text
