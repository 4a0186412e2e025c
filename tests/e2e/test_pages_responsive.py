"""Every main page, for the role that uses it, at a phone's width (390 px) and a laptop's (1366 px):
a screenshot of each (test-output/screens/<page>-<width>.png), no horizontal scrolling, and axe-core
(bundled by axe-playwright-python, so it runs offline) with no serious or critical violation.

One test visits them all and reports every problem at once: which page, which width, what."""
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from accounts.roles import Role
from cases.models import ImageStatus
from review import services as reviews

from ..api.reviewing import review_all, reviewable_sample
from ..factories import PASSWORD, CellImageFactory, PatientFactory, SampleFactory, UserFactory
from ..review.ranges import seed_adult_ranges
from .test_browser_flow import CHROMIUM, _login, browser  # noqa: F401 (fixture)

SCREENS = Path(os.environ.get("HV_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "screens"
WIDTHS = (390, 1366)
BLOCKING_IMPACTS = ("serious", "critical")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM}"),
]


@pytest.fixture
def lab(db):
    """One patient with a sample at each stage the pages show, and a user of each role."""
    seed_adult_ranges()
    tech = UserFactory(username="tech", role=Role.TECHNICIAN, printed_name="Tara Technician")
    doctor = UserFactory(username="doctor", role=Role.DOCTOR, printed_name="Dr Dana Doctor")
    UserFactory(username="admin", role=Role.ADMIN, printed_name="Alex Admin")
    awaiting = reviewable_sample(tech, wbc_count=Decimal("8.00"))
    signed = reviewable_sample(tech, wbc_count=Decimal("11.70"), first_image=6)
    review_all(doctor, signed)
    reviews.sample_sign(actor=doctor, sample=signed, password=PASSWORD)
    patient = PatientFactory(mrn="E2E-RESP-1")
    registered = SampleFactory(patient=patient, created_by=tech)
    classifying = SampleFactory(patient=patient, created_by=tech)
    for _ in range(3):
        CellImageFactory(sample=classifying, uploaded_by=tech)
    CellImageFactory(sample=classifying, uploaded_by=tech, status=ImageStatus.CLASSIFIED)
    return {"patient": awaiting.patient, "awaiting": awaiting, "signed": signed, "registered": registered,
            "classifying": classifying}


def _pages(lab) -> list[tuple[str, str | None, str, int]]:
    """(name for the screenshot, role signed in or None, path, expected HTTP status)."""
    p, awaiting, signed = lab["patient"], lab["awaiting"], lab["signed"]
    tech, doc, admin = Role.TECHNICIAN.value, Role.DOCTOR.value, Role.ADMIN.value
    return [
        ("login", None, "/accounts/login/", 200),
        ("home", tech, "/", 200),
        ("patient-list", tech, "/patients/", 200),
        ("patient-detail", tech, f"/patients/{p.pk}/", 200),
        ("patient-form", tech, "/patients/new/", 200),
        ("sample-form", tech, f"/patients/{p.pk}/samples/new/", 200),
        ("sample-edit", tech, f"/samples/{lab['registered'].pk}/edit/", 200),
        ("sample-list", tech, "/samples/", 200),
        ("sample-upload", tech, f"/samples/{lab['registered'].pk}/", 200),  # the upload form
        ("sample-progress", tech, f"/samples/{lab['classifying'].pk}/", 200),  # images being classified
        ("sample-history", tech, f"/samples/{signed.pk}/history/", 200),
        ("worklist", doc, "/worklist/", 200),
        ("review", doc, f"/samples/{awaiting.pk}/review/", 200),
        ("sample-detail-signed", doc, f"/samples/{signed.pk}/", 200),
        ("signed-version", doc, f"/samples/{signed.pk}/signed/1/", 200),
        ("agreement", doc, "/agreement/", 200),
        ("two-factor", doc, "/accounts/two-factor/", 200),
        ("models", admin, "/models/", 200),
        ("audit", admin, "/audit/", 200),
        ("403", tech, "/worklist/", 403),
        ("404", tech, "/samples/999999/", 404),
    ]


# The innermost elements that end right of the viewport: what to fix when a page scrolls sideways.
TOO_WIDE = """() => {
  const clips = (e) => getComputedStyle(e).overflowX !== 'visible';
  const beyond = (e) => e.getBoundingClientRect().right > window.innerWidth + 0.5;
  const clipped = (e) => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                             if (clips(a)) return true; } return false; };
  return Array.from(document.body.querySelectorAll('*'))
    .filter((e) => beyond(e) && !clipped(e) && (clips(e) || !Array.from(e.children).some(beyond)))
    .slice(0, 4)
    .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
         + (typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/ +/).join('.') : '')
         + ' ' + Math.round(e.getBoundingClientRect().right));
}"""


def _too_wide(page) -> str:
    return ", ".join(page.evaluate(TOO_WIDE))


def _axe_problems(page) -> list[str]:
    results = Axe().run(page)
    problems = []
    for violation in results.response["violations"]:
        if violation["impact"] in BLOCKING_IMPACTS:
            targets = ", ".join(" ".join(n["target"]) for n in violation["nodes"][:3])
            problems.append(f"axe {violation['impact']} {violation['id']}: {violation['help']} [{targets}]")
    return problems


def test_every_main_page_fits_a_phone_and_passes_axe(live_server, browser, lab):  # noqa: F811
    SCREENS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    by_role: dict[str | None, list] = {}
    for entry in _pages(lab):
        by_role.setdefault(entry[1], []).append(entry)
    for role, entries in by_role.items():
        context = browser.new_context(viewport={"width": WIDTHS[-1], "height": 900})
        page = context.new_page()
        if role is not None:
            _login(page, live_server.url, {"technician": "tech", "doctor": "doctor", "admin": "admin"}[role])
        for name, _, path, status in entries:
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                response = page.goto(live_server.url + path)
                where = f"{name} ({path}) at {width} px"
                if response is None or response.status != status:
                    problems.append(f"{where}: HTTP {response and response.status}, expected {status}")
                    continue
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
                scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                if scroll > inner:
                    problems.append(f"{where}: {scroll} px wide, scrolls sideways; too wide: {_too_wide(page)}")
                problems += [f"{where}: {p}" for p in _axe_problems(page)]
        context.close()
    assert not problems, "\n".join(problems)


def test_the_404_page_is_the_lab_page_not_a_debug_page(live_server, browser, lab):  # noqa: F811
    page = browser.new_page()
    _login(page, live_server.url, "tech")
    response = page.goto(f"{live_server.url}/samples/999999/")
    assert response.status == 404
    assert "HematoVision" in page.title() and not re.search(r"Using the URLconf|Traceback", page.content())
