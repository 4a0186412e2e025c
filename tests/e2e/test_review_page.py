"""Browser tests of the review page (issue 13, items 1, 4, 6 and 10): the Grad-CAM overlay turns off,
a page shown again shows the server's result and a stale one cannot be signed, a reclassified cell
moves to its group at once and "Confirm all" updates in place. Chromium against a live server; the
cells are classified by the factories (no worker)."""
import re
import shutil
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from accounts.roles import Role
from classifier.selectors import latest_prediction
from review import selectors as rs
from review import services as reviews

from ..api.reviewing import reviewable_sample
from ..factories import PASSWORD, ModelVersionFactory, PredictionFactory, UserFactory
from ..review.ranges import seed_adult_ranges
from .test_browser_flow import CHROMIUM, _login, _shot, browser  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM}"),
]


@pytest.fixture
def people(db):
    seed_adult_ranges()
    return (UserFactory(username="tech", role=Role.TECHNICIAN),
            UserFactory(username="doctor", role=Role.DOCTOR, printed_name="Dr Dana Doctor"))


def _with_heatmaps(sample):
    """A newer prediction with a Grad-CAM heatmap for each cell (the AI's class unchanged)."""
    version = ModelVersionFactory(name="test-model-with-heatmaps")
    for image in sample.images.all():
        old = latest_prediction(image=image)
        PredictionFactory(image=image, model_version=version, predicted_class=old.predicted_class,
                          unidentified=old.unidentified, with_heatmap=True)
    return sample


def _open_review(browser, live_server, sample, *, width=1366, height=900):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": height})
    _login(page, live_server.url, "doctor")
    page.goto(f"{live_server.url}/samples/{sample.pk}/review/")
    page.wait_for_selector(".review-cell.selected")
    return page


def test_gradcam_overlay_is_off_by_default_and_turns_off(live_server, browser, people):  # noqa: F811
    tech, _ = people
    sample = _with_heatmaps(reviewable_sample(tech))
    page = _open_review(browser, live_server, sample)
    overlay, toggle = page.locator("#cell-large-heatmap"), page.locator("#heatmap-toggle")
    expect(toggle).not_to_be_checked()
    expect(overlay).to_be_hidden()  # true colours first
    page.keyboard.press("h")
    expect(overlay).to_be_visible()
    page.keyboard.press("h")
    expect(overlay).to_be_hidden()
    toggle.check()
    expect(overlay).to_be_visible()
    toggle.uncheck()
    expect(overlay).to_be_hidden()
    assert page.locator("#cell-large-heatmap").evaluate("e => getComputedStyle(e).display") == "none"
    page.keyboard.press("h")  # focus is on the checkbox now: H still works
    expect(overlay).to_be_visible()
    expect(page.locator("#review-live")).to_have_text("Grad-CAM overlay on")
    page.reload()  # remembered for the session
    page.wait_for_selector(".review-cell.selected")
    expect(page.locator("#heatmap-toggle")).to_be_checked()
    expect(page.locator("#cell-large-heatmap")).to_be_visible()
    page.keyboard.press("h")
    expect(page.locator("#cell-large-heatmap")).to_be_hidden()
    page.reload()
    page.wait_for_selector(".review-cell.selected")
    expect(page.locator("#cell-large-heatmap")).to_be_hidden()


def test_page_shown_again_shows_the_server_result_and_a_stale_one_is_not_signed(
    live_server, browser, people  # noqa: F811
):
    tech, doctor = people
    sample = reviewable_sample(tech, wbc_count=Decimal("8.00"))
    first = sample.images.order_by("pk").first()  # the AI said neutrophil
    for image in sample.images.all():
        reviews.cell_review(actor=doctor, image=image, final_class=latest_prediction(image=image).predicted_class)
    page = _open_review(browser, live_server, sample)
    cell = page.locator(f'[data-image-id="{first.pk}"]')
    expect(cell.locator('[data-role="final"]')).to_have_text("Neutrophil")

    # Away to the sample page; meanwhile the cell is excluded elsewhere; Back.
    page.click("text=sample page")
    page.wait_for_url(re.compile(rf".*/samples/{sample.pk}/$"))
    reviews.cell_review(actor=doctor, image=first, final_class="EXCLUDED")
    page.go_back()
    page.wait_for_selector(".review-cell.selected")
    expect(cell.locator('[data-role="final"]')).to_have_text("Excluded")
    expect(page.locator('.review-group[data-group="EXCLUDED"]')).to_contain_text("Excluded (not counted)")
    server_hash = rs.result_sha256(rs.result_snapshot(sample=sample))
    expect(page.locator("#result-sha256")).to_have_value(server_hash)

    # Changed again while the page is open: it reloads its state when shown again (tab brought back).
    reviews.cell_review(actor=doctor, image=first, final_class="MONOCYTE")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(cell.locator('[data-role="final"]')).to_have_text("Monocyte")
    expect(page.locator('.review-group[data-group="MONOCYTE"]')).to_contain_text("was: Neutrophil (AI)")
    expect(page.locator("#result-sha256")).to_have_value(rs.result_sha256(rs.result_snapshot(sample=sample)))

    # Changed once more with no chance to reload: the signature of what the page shows is refused.
    reviews.cell_review(actor=doctor, image=first, final_class="NEUTROPHIL")
    page.fill("#sign-password", PASSWORD)
    page.click("#sign-button")
    page.wait_for_selector("text=/The result changed since you loaded the page/")
    sample.refresh_from_db()
    assert sample.status == "awaiting_review" and not sample.signatures.exists()
    # The refusal page shows the server's result; signing it now works.
    expect(cell.locator('[data-role="final"]')).to_have_text("Neutrophil")
    page.fill("#sign-password", PASSWORD)
    page.click("#sign-button")
    page.wait_for_selector("text=/signed \\(version 1\\)/")
    _shot(page, "review-signed-result")
    expect(page.locator(".signed-differential")).to_be_visible()


def test_reclassified_cell_moves_at_once_and_confirm_all_stays_in_place(live_server, browser, people):  # noqa: F811
    tech, _ = people
    sample = reviewable_sample(tech, wbc_count=Decimal("8.00"))
    page = _open_review(browser, live_server, sample, width=1366, height=500)
    page.evaluate("window.hvNoReload = 'same page'")  # gone if the page reloads
    neutrophils = page.locator('.review-group[data-group="NEUTROPHIL"]')
    lymphocytes = page.locator('.review-group[data-group="LYMPHOCYTE"]')
    first_neutrophil = neutrophils.locator(".review-cell").first
    image_id = first_neutrophil.get_attribute("data-image-id")
    first_neutrophil.click()
    page.keyboard.press("2")  # lymphocyte
    moved = lymphocytes.locator(f'[data-image-id="{image_id}"]')
    expect(moved).to_be_visible()
    expect(moved.locator('[data-role="was"]')).to_have_text("was: Neutrophil (AI)")
    expect(neutrophils.locator(f'[data-image-id="{image_id}"]')).to_have_count(0)
    expect(page.locator("#review-live")).to_contain_text("moved to Lymphocyte")

    # "Confirm all" of the neutrophils: in place, no reload, no jump to the top.
    neutrophils.scroll_into_view_if_needed()
    before = page.evaluate("window.scrollY")
    assert before > 0
    neutrophils.locator("button:has-text('Confirm all')").click()
    expect(neutrophils.locator('[data-role="group-unreviewed"]')).to_have_text("0")
    expect(neutrophils.locator(".review-cell.reviewed")).to_have_count(1)
    expect(neutrophils.locator("form.confirm-group")).to_be_hidden()
    assert page.evaluate("window.hvNoReload") == "same page"
    assert abs(page.evaluate("window.scrollY") - before) < 50
    assert page.evaluate("document.activeElement.id") == "group-NEUTROPHIL"
    expect(page.locator("#review-live")).to_contain_text("1 cell(s) confirmed as Neutrophil")
    _shot(page, "review-after-confirm-all")
