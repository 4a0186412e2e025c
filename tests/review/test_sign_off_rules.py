"""Sign-off rules of issue 13: the lab's minimum count and its override, the result the doctor saw
(stale pages), comments that do not review a cell, an accurate sign-off box, reclassified cells in
their new group, and a review page that is never shown from a cache."""
import io
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from pypdf import PdfReader

from cases.errors import InvalidState
from cases.models import SampleStatus
from review import selectors as rs
from review import services as reviews
from review.models import CellReview, Signature
from review.reports import fhir_diagnostic_report, render_pdf

from ..api.conftest import token_client
from ..api.reviewing import AI, review_all, reviewable_sample
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

REASON = "Severe leucopenia: 6 white cells on the whole slide."


@pytest.fixture
def reviewed(technician, doctor):
    sample = reviewable_sample(technician, wbc_count=Decimal("8.00"))
    review_all(doctor, sample)
    return sample


@pytest.fixture
def lab_minimum(settings):
    settings.HV_MIN_CELLS_FOR_SIGNOFF = 100  # the default; the test suite otherwise signs small samples


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def _shown_hash(page: str) -> str:
    return re.search(r'name="result_sha256" id="result-sha256" value="([0-9a-f]{64})"', page).group(1)


# The minimum count -------------------------------------------------------------------


def test_sign_refused_below_the_minimum_count_without_a_reason(doctor, reviewed, lab_minimum):
    with pytest.raises(ValidationError) as refused:
        reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD)
    assert "count_override_reason" in refused.value.error_dict
    assert "Only 6 cell(s) counted; the lab's minimum for a differential is 100" in str(refused.value)
    reviewed.refresh_from_db()
    assert reviewed.status == SampleStatus.AWAITING_REVIEW and not Signature.objects.exists()


def test_sign_below_the_minimum_with_a_reason_is_recorded_and_printed(doctor, reviewed, lab_minimum):
    signature = reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD,
                                    count_override_reason=f"  {REASON} ")
    assert signature.snapshot["minimum_count"] == {"required": 100, "counted": 6, "override_reason": REASON}
    text = _pdf_text(render_pdf(sample=reviewed, signature=signature))
    assert "below the laboratory's minimum of 100" in text and "Severe leucopenia" in text
    report = fhir_diagnostic_report(sample=reviewed, signature=signature)["entry"][0]["resource"]
    assert REASON in report["conclusion"]


def test_sign_at_the_minimum_needs_no_reason(doctor, reviewed, settings):
    settings.HV_MIN_CELLS_FOR_SIGNOFF = 6
    signature = reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD)
    assert "minimum_count" not in signature.snapshot


def test_excluded_cells_do_not_count_towards_the_minimum(doctor, reviewed, settings):
    settings.HV_MIN_CELLS_FOR_SIGNOFF = 6
    reviews.cell_review(actor=doctor, image=reviewed.images.order_by("pk").first(), final_class="EXCLUDED")
    with pytest.raises(ValidationError, match="Only 5 cell"):
        reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD)


def test_api_sign_below_the_minimum_answers_400_on_the_reason_field(doctor, reviewed, lab_minimum):
    api = token_client(doctor)
    state = api.get(reverse("api:sample-review", args=[reviewed.pk])).json()
    assert state["minimum_count"]["required"] == 100 and state["minimum_count"]["counted"] == 6
    assert "Only 6 cell(s) counted" in state["minimum_count"]["shortfall"]
    url = reverse("api:sample-sign", args=[reviewed.pk])
    refused = api.post(url, {"password": PASSWORD}, format="json")
    assert refused.status_code == 400 and "count_override_reason" in refused.json()
    signed = api.post(url, {"password": PASSWORD, "count_override_reason": REASON}, format="json")
    assert signed.status_code == 201 and signed.json()["snapshot"]["minimum_count"]["override_reason"] == REASON


def test_review_page_asks_for_a_reason_below_the_minimum(client, doctor, reviewed, lab_minimum):
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[reviewed.pk])).content.decode()
    assert re.search(r"<div id=\"count-override\"\s*>", page)  # shown, not hidden
    assert 'for="count-override-reason"' in page
    refused = client.post(reverse("sample-sign", args=[reviewed.pk]),
                          {"password": PASSWORD, "result_sha256": _shown_hash(page)})
    assert refused.status_code == 400 and "the lab&#x27;s minimum for a differential is 100" in refused.content.decode()
    signed = client.post(reverse("sample-sign", args=[reviewed.pk]),
                         {"password": PASSWORD, "result_sha256": _shown_hash(page), "count_override_reason": REASON})
    assert signed.status_code == 302


# The result the doctor saw -------------------------------------------------------------


def test_sign_refused_when_the_result_changed_since_the_page_was_loaded(doctor, reviewed):
    seen = rs.result_sha256(rs.result_snapshot(sample=reviewed))
    neutrophil = reviewed.images.order_by("pk").first()
    reviews.cell_review(actor=doctor, image=neutrophil, final_class="EXCLUDED")  # in another tab
    with pytest.raises(InvalidState, match="result changed since you loaded the page"):
        reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD, result_sha256=seen)
    assert not Signature.objects.exists()
    now = rs.result_sha256(rs.result_snapshot(sample=reviewed))
    signature = reviews.sample_sign(actor=doctor, sample=reviewed, password=PASSWORD, result_sha256=now)
    assert signature.snapshot_sha256 == now  # the signed result is the one whose hash was shown


def test_api_sign_with_a_stale_result_hash_is_409(doctor, reviewed):
    api = token_client(doctor)
    state_url = reverse("api:sample-review", args=[reviewed.pk])
    seen = api.get(state_url).json()["result_sha256"]
    image = reviewed.images.order_by("pk").first()
    changed = api.post(reverse("api:cell-review", args=[reviewed.pk, image.pk]), {"final_class": "MONOCYTE"},
                       format="json").json()
    assert changed["result_sha256"] != seen and changed["result_sha256"] == api.get(state_url).json()["result_sha256"]
    url = reverse("api:sample-sign", args=[reviewed.pk])
    stale = api.post(url, {"password": PASSWORD, "result_sha256": seen}, format="json")
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]
    fresh = api.post(url, {"password": PASSWORD, "result_sha256": changed["result_sha256"]}, format="json")
    assert fresh.status_code == 201 and fresh.json()["snapshot_sha256"] == changed["result_sha256"]


def test_page_sign_without_the_shown_result_hash_is_refused(client, doctor, reviewed):
    client.force_login(doctor)
    refused = client.post(reverse("sample-sign", args=[reviewed.pk]), {"password": PASSWORD})
    assert refused.status_code == 400 and "reload the page" in refused.content.decode()
    assert not Signature.objects.exists()


def test_review_page_is_never_served_from_a_cache(client, doctor, reviewed):
    client.force_login(doctor)
    response = client.get(reverse("sample-review", args=[reviewed.pk]))
    assert "no-store" in response["Cache-Control"]
    assert _shown_hash(response.content.decode()) == rs.result_sha256(rs.result_snapshot(sample=reviewed))


# Comments and the sign-off box -----------------------------------------------------------


def test_saving_a_comment_does_not_review_or_reclassify_the_cell(doctor, technician):
    sample = reviewable_sample(technician)
    api = token_client(doctor)
    first, second = sample.images.order_by("pk")[:2]
    url = reverse("api:cell-review", args=[sample.pk, first.pk])
    refused = api.post(url, {"comment": "band form?"}, format="json")
    assert refused.status_code == 400 and "not reviewed yet" in refused.json()["comment"][0]
    assert not CellReview.objects.filter(image=first).exists()
    reviews.cell_review(actor=doctor, image=second, final_class="EXCLUDED")
    saved = api.post(reverse("api:cell-review", args=[sample.pk, second.pk]), {"comment": "smudge"}, format="json")
    assert saved.status_code == 200
    review = CellReview.objects.get(image=second)
    assert (review.final_class, review.comment) == ("EXCLUDED", "smudge")
    assert saved.json()["differential"]["unreviewed"] == 5


def test_sign_off_box_says_every_cell_is_excluded_only_when_every_cell_is(doctor, technician):
    sample = reviewable_sample(technician)
    nothing_reviewed = reviews.sign_off_blockers(sample=sample)
    assert "6 cell(s) are not reviewed" in nothing_reviewed
    assert not any("excluded" in b for b in nothing_reviewed)
    images = list(sample.images.order_by("pk"))
    reviews.cell_review(actor=doctor, image=images[0], final_class="EXCLUDED")
    assert not any("excluded" in b for b in reviews.sign_off_blockers(sample=sample))
    review_all(doctor, sample, final=["EXCLUDED"] * len(AI))
    assert reviews.sign_off_blockers(sample=sample) == ["every cell is excluded; nothing to report"]


# Reclassified cells ---------------------------------------------------------------------


def test_a_reclassified_cell_moves_to_its_final_group_with_the_ai_class_noted(client, doctor, technician):
    sample = reviewable_sample(technician)
    neutrophil = sample.images.order_by("pk").first()  # the AI said neutrophil
    reviews.cell_review(actor=doctor, image=neutrophil, final_class="LYMPHOCYTE")
    groups = {g.key: [c.image.pk for c in g.cells] for g in rs.review_groups(rows=rs.review_cells(sample=sample))}
    assert neutrophil.pk in groups["LYMPHOCYTE"] and neutrophil.pk not in groups["NEUTROPHIL"]
    client.force_login(doctor)
    page = client.get(reverse("sample-review", args=[sample.pk])).content.decode()
    lymphocytes = page[page.index('data-group="LYMPHOCYTE"'):page.index('data-group="MONOCYTE"')]
    assert f'data-image-id="{neutrophil.pk}"' in lymphocytes
    assert '<span class="was" data-role="was" ><br>was: Neutrophil (AI)</span>' in lymphocytes
