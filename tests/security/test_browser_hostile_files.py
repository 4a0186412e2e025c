"""In Chromium: images uploaded as ".html" / ".svg" (or stored under such a name before the fix) never run
their script when a doctor opens them, and the pages keep working under the Content-Security-Policy."""
from __future__ import annotations

import re
import shutil

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from playwright.sync_api import expect

from accounts.roles import Role
from cases.downloads import DOWNLOAD_CSP

from ..e2e.test_browser_flow import CHROMIUM, _login, browser  # noqa: F401  (browser: the fixture)
from ..factories import UserFactory, make_classified_sample
from .hostile_files import png_with_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"
    ),
]

NAMES = ["cell_0042.html", "cell_0043.svg", "legacy.png"]


@pytest.fixture
def hostile_sample(db):
    technician = UserFactory(username="tech", role=Role.TECHNICIAN)
    UserFactory(username="doctor", role=Role.DOCTOR)
    files = [(name, png_with_script(color=(200, 100, 50 + 40 * i))) for i, name in enumerate(NAMES)]
    sample = make_classified_sample(
        technician=technician, files=files, ai_classes=["NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE"]
    )
    images = list(sample.images.order_by("pk"))
    # As uploads were stored before the fix: under the user's extension.
    legacy = images[2]
    name = legacy.file.storage.save("cells/legacy/cell_0044.html", ContentFile(legacy.file.open("rb").read()))
    type(legacy).objects.filter(pk=legacy.pk).update(file=name)
    return sample, images


def _not_pwned(page):
    assert page.evaluate("typeof window.hvPwned") == "undefined"
    assert page.title() != "pwned"


def test_hostile_files_never_run_script_and_pages_work_under_the_policy(live_server, browser, hostile_sample):  # noqa: F811
    sample, images = hostile_sample
    base = live_server.url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    violations, dialogs = [], []
    # Chromium's own viewer for an image opened in a tab styles it inline, which the downloads' policy
    # blocks (the image shows, unstyled): only violations on the site's pages count.
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and "/file/" not in page.url and violations.append(m.text),
    )
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _login(page, base, "doctor")

    # Opened directly: an image, typed by its content, in a sandbox, never a page.
    for image in images:
        response = page.goto(f"{base}{reverse('image-file', args=[image.pk])}")
        headers = response.headers
        assert response.status == 200
        assert headers["content-type"] == "image/png"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == DOWNLOAD_CSP
        assert headers["content-disposition"] == f'inline; filename="cell-{image.pk}.png"'
        assert page.evaluate("document.contentType") == "image/png"
        _not_pwned(page)

    # The review page shows them as images (review.js runs: it fills the side panel) and runs nothing else.
    page.goto(f"{base}{reverse('sample-review', args=[sample.pk])}")
    page.click(f".review-cell[data-image-id='{images[0].pk}']")
    page.wait_for_selector("#cell-file:has-text('cell_0042.html')")
    # (expect(), not wait_for_function: that polls with eval, which the policy refuses, as it should)
    expect(page.locator("#cell-large-img")).to_have_js_property("naturalWidth", 32)
    page.keyboard.press("Enter")  # confirm the AI's class: review.js posts it (connect-src 'self')
    expect(page.locator("#unreviewed")).to_have_text("2")
    _not_pwned(page)

    # Other pages that load script files: the sample list's filter, the API's Swagger UI.
    page.goto(f"{base}{reverse('sample-list')}")
    page.select_option("select[name=status]", "awaiting_review")
    page.wait_for_url(re.compile(r".*status=awaiting_review.*"))
    page.goto(f"{base}{reverse('api:docs')}")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)

    assert not violations, violations
    assert not dialogs, dialogs
