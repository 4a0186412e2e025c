"""Browser end to end: Playwright (Python) driving Debian's Chromium against a live server
and a real Celery worker. Screenshots of each main page go to test-output/screenshots/."""
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from accounts.roles import Role
from audit.models import AuditEvent
from cases.models import Sample, SampleStatus
from classifier import services as classifier_services
from classifier.inference import default_card_path, default_model_path
from hematovision.celery import app

from ..factories import PASSWORD, UserFactory
from ..queue.workers import Worker

CHROMIUM = os.environ.get("HV_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("HV_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "screenshots"
HEADLESS_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture
def browser(tmp_path):
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are
    # still synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_FLAGS, headless=True)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def worker(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    app.control.purge()
    classifier_services.model_version_register(
        model_path=default_model_path(), card_path=default_card_path(), activate=True
    )
    w = Worker(tmp_path / "worker.log")
    w.wait_ready()
    yield w
    w.stop()


def _login(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def _logout(page):
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/accounts/login/.*"))


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_technician_to_doctor_to_admin(live_server, browser, worker, cell_files):
    UserFactory(username="tech", role=Role.TECHNICIAN, printed_name="Tara Technician")
    UserFactory(username="doctor", role=Role.DOCTOR, printed_name="Dr Dana Doctor")
    UserFactory(username="admin", role=Role.ADMIN, printed_name="Alex Admin")
    base = live_server.url
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)

    # Technician: patient, sample, upload of real cells.
    _login(page, base, "tech")
    _shot(page, "01-home-technician")
    page.click("text=Register a patient")
    page.fill("input[name=mrn]", "E2E-0001")
    page.fill("input[name=family_name]", "Hodgkin")
    page.fill("input[name=given_name]", "Dorothy")
    page.fill("input[name=date_of_birth]", "1960-05-12")
    page.select_option("select[name=sex]", "F")
    page.click("button:has-text('Register')")
    page.wait_for_selector("text=Patient HODGKIN, Dorothy (E2E-0001) registered.")
    page.click("text=Register a sample")
    page.fill("input[name=collected_at]", "2026-11-27T07:30")
    page.select_option("select[name=priority]", "stat")
    page.fill("input[name=wbc_count]", "9.5")
    page.click("button:has-text('Register sample')")
    page.wait_for_selector("text=/Sample HV-\\d{4}-\\d{6} registered/")
    files = cell_files[:6]
    page.set_input_files("input[name=images]", [str(p) for p in files])
    page.click("button:has-text('Upload')")
    page.wait_for_selector("text=6 image(s) accepted and queued for classification.")
    # The page follows progress without a reload until the worker has classified all six.
    page.wait_for_selector("text=6 of 6 processed", timeout=180_000)
    page.wait_for_selector("#sample-status:has-text('Awaiting review')", timeout=30_000)
    _shot(page, "02-sample-classified")
    sample = Sample.objects.get(patient__mrn="E2E-0001")
    _logout(page)

    # Doctor: worklist, keyboard review, signature, PDF.
    _login(page, base, "doctor")
    page.click("nav >> text=Worklist")
    page.wait_for_selector(f"text={sample.accession_number}")
    _shot(page, "03-worklist")
    page.click(f"text={sample.accession_number}")
    page.wait_for_selector(".review-cell.selected")
    page.keyboard.press("2")  # first cell: lymphocyte
    # expect(), not wait_for_function: that polls with eval, which the Content-Security-Policy refuses.
    expect(page.locator("#unreviewed")).to_have_text("5")
    for remaining in range(4, -1, -1):
        page.keyboard.press("Enter")  # confirm the AI's class
        expect(page.locator("#unreviewed")).to_have_text(str(remaining))
    page.keyboard.press("h")
    _shot(page, "04-review")
    assert page.locator("#blockers li").count() == 0
    page.fill("#sign-password", PASSWORD)
    page.click("#sign-button")
    page.wait_for_selector("text=/signed \\(version 1\\)/")
    sample.refresh_from_db()
    assert sample.status == SampleStatus.SIGNED
    with page.expect_download() as download_info:
        page.click("text=Download PDF report")
    pdf_path = download_info.value.path()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(Path(pdf_path).read_bytes())).pages)
    assert sample.accession_number in text and "Dr Dana Doctor" in text and "E2E-0001" in text
    _shot(page, "05-signed-sample")
    _logout(page)

    # Admin: audit trail.
    _login(page, base, "admin")
    page.click("nav >> text=Audit trail")
    page.fill("input[name=object_type]", "sample")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("td:has-text('doctor')")
    _shot(page, "06-audit-trail")
    assert AuditEvent.objects.filter(object_type="review.signature", actor_username="doctor").exists()
    assert AuditEvent.objects.filter(action="download", actor_username="doctor").exists()
