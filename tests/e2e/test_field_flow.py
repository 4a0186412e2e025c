"""Browser end to end for whole fields: a technician uploads a BCCD field (the system decides it is
a field), a real worker detects its white cells and classifies them, and a doctor opens a detected
cell in place on its field and reviews it there. Screenshots go to test-output/screenshots/."""
import re

from playwright.sync_api import expect

from accounts.roles import Role
from cases.models import CellOrigin, Field, FieldStatus, SampleStatus
from review.models import CellReview

from ..factories import PatientFactory, SampleFactory, UserFactory
from ..fields.conftest import FIELDS, ONE_AT_EDGE
from .test_browser_flow import _login, _logout, _shot, browser, pytestmark, worker  # noqa: F401 (fixtures)

pytestmark = pytestmark  # worker, slow, transactional database, Chromium present


def test_field_upload_detect_and_review_in_place(live_server, browser, worker):  # noqa: F811
    tech = UserFactory(username="tech", role=Role.TECHNICIAN, printed_name="Tara Technician")
    UserFactory(username="doctor", role=Role.DOCTOR, printed_name="Dr Dana Doctor")
    sample = SampleFactory(patient=PatientFactory(mrn="E2E-FIELD"), created_by=tech)
    base = live_server.url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    # Technician: one whole field, the system decides what it is.
    _login(page, base, "tech")
    page.goto(f"{base}/samples/{sample.pk}/")
    page.set_input_files("input[name=images]", str(FIELDS / f"{ONE_AT_EDGE}.jpg"))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("text=1 field(s) accepted and queued for white-cell detection.")
    page.wait_for_selector(f"text=/{ONE_AT_EDGE}.jpg: taken as a field: 640x480 with 2 white cell/")
    # The page follows the worker: detection, then classification of the two cells found.
    page.wait_for_selector("#sample-status:has-text('Awaiting review')", timeout=180_000)
    page.wait_for_selector("text=2 of 2 processed", timeout=30_000)
    expect(page.locator("#fields")).to_contain_text("estimate")
    _shot(page, "11-field-detected")
    field = Field.objects.get(sample=sample)
    assert field.status == FieldStatus.DETECTED and field.white_cells_found == 2
    assert sorted(c.touches_edge for c in field.cells.all()) == [False, True]
    _logout(page)

    # Doctor: from the review gallery, "see in field", then review the cell in place.
    _login(page, base, "doctor")
    page.goto(f"{base}/samples/{sample.pk}/review/")
    page.wait_for_selector(".review-cell.selected")
    page.click("a.see-in-field >> nth=0")
    page.wait_for_url(re.compile(r".*/fields/\d+/\?cell=\d+"))
    selected = page.locator("rect.box-selected")
    expect(selected).to_have_count(1)
    expect(page.locator("#field-cell-panel")).to_be_visible()
    cell_id = int(selected.get_attribute("data-image-id"))
    page.click("#field-class-buttons button[data-set-class=NEUTROPHIL]")
    expect(page.locator("#field-cell-final")).to_have_text("Neutrophil")
    _shot(page, "12-field-cell-reviewed-in-place")
    review = CellReview.objects.get(image_id=cell_id)
    assert review.final_class == "NEUTROPHIL" and review.image.origin == CellOrigin.DETECTED
    sample.refresh_from_db()
    assert sample.status == SampleStatus.AWAITING_REVIEW
