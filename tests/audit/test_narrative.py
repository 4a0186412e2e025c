"""Issue 13, item 9: the audit trail in words, the sample's own history page, and the trail
page's filters (who, action, dates, accession)."""
from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from audit import narrative
from audit.models import AuditEvent
from audit.services import record_event
from cases import selectors, services
from review import services as reviews

from ..factories import PASSWORD, UserFactory, _distinct_png, make_classified_sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(db):
    return UserFactory(username="bob", first_name="Bob", last_name="Baker", role=Role.TECHNICIAN)


@pytest.fixture
def ada(db):
    return UserFactory(username="ada", first_name="Ada", last_name="Lovelace", role=Role.DOCTOR)


@pytest.fixture
def story(bob, ada):
    """A sample uploaded by Bob, classified, reviewed and signed by Ada, then reopened."""
    sample = make_classified_sample(
        technician=bob, files=[(f"c{i}.png", _distinct_png(i)) for i in range(3)],
        ai_classes=["NEUTROPHIL", "NEUTROPHIL", "LYMPHOCYTE"],
    )
    first, second, third = sample.images.order_by("pk")
    reviews.cell_review(actor=ada, image=first, final_class="NEUTROPHIL")
    reviews.cell_review(actor=ada, image=second, final_class="MONOCYTE")
    reviews.cell_review(actor=ada, image=second, final_class="LYMPHOCYTE", comment="large granular")
    reviews.cell_review(actor=ada, image=third, final_class="EXCLUDED")
    reviews.cell_review(actor=ada, image=third, final_class="LYMPHOCYTE")
    reviews.sample_sign(actor=ada, sample=sample, password=PASSWORD, count_override_reason="a test sample")
    reviews.sample_amend(actor=ada, sample=sample, reason="wrong cell count")
    return sample, (first, second, third)


def _texts(entries) -> list[str]:
    return [e.text for e in entries]


def test_sample_history_tells_the_story_in_words_oldest_first(story):
    sample, (first, second, third) = story
    acc = sample.accession_number
    texts = _texts(selectors.sample_history(sample=sample))
    expected = [
        f"Tech Bob Baker uploaded 3 images to sample {acc}",
        "The AI (test-model) classified 3 cells",
        f"Sample {acc} is ready for review",
        f"Dr Ada Lovelace confirmed cell {first.pk} as Neutrophil",
        f"Dr Ada Lovelace reclassified cell {second.pk} from Neutrophil to Monocyte",
        f"Dr Ada Lovelace reclassified cell {second.pk} from Monocyte to Lymphocyte. "
        f"Dr Ada Lovelace commented on cell {second.pk}: “large granular”",
        f"Dr Ada Lovelace excluded cell {third.pk} from the count",
        f"Dr Ada Lovelace counted cell {third.pk} again, as Lymphocyte",
        f"Dr Ada Lovelace signed the report of sample {acc}",
        f"Sample {acc} is signed and locked",
        f"Dr Ada Lovelace reopened the signed report of sample {acc} for amendment: “wrong cell count”",
        f"Sample {acc} is open for amendment",
    ]
    positions = []
    for sentence in expected:
        matches = [i for i, t in enumerate(texts) if sentence in t]
        assert matches, f"{sentence!r} not in {texts}"
        positions.append(matches[0])
    assert positions == sorted(positions), texts


def test_history_page_is_linked_and_readable_by_every_clinical_role(client, story, bob, ada):
    sample, (_, second, _) = story
    url = reverse("sample-history", kwargs={"pk": sample.pk})
    for user in (bob, ada, UserFactory(role=Role.ADMIN)):
        client.force_login(user)
        page = client.get(url)
        assert page.status_code == 200
        assert f"reclassified cell {second.pk} from Neutrophil to Monocyte" in page.content.decode()
    assert url in client.get(reverse("sample-detail", kwargs={"pk": sample.pk})).content.decode()
    client.force_login(ada)
    assert url in client.get(reverse("sample-review", kwargs={"pk": sample.pk})).content.decode()


def test_history_shows_the_cancellation_and_its_reason(client, bob, patient):
    sample = services.sample_create(actor=bob, patient=patient, collected_at=timezone.now(),
                                    specimen_type="peripheral_blood", stain="mgg", priority="stat")
    services.sample_cancel(actor=bob, sample=sample, reason="clotted")
    entries = selectors.sample_history(sample=sample)
    acc = sample.accession_number
    assert entries[0].text == f"Tech Bob Baker registered sample {acc} (Peripheral blood smear, STAT)"
    assert entries[-1].text == f"Tech Bob Baker cancelled sample {sample.accession_number}"
    assert entries[-1].reason == "clotted"


# One sentence per kind of event ----------------------------------------------------------------


def _event(**fields) -> AuditEvent:
    base = {"timestamp": timezone.now(), "actor_username": "system", "object_type": "", "object_id": "",
            "object_repr": "", "old_values": {}, "new_values": {}, "reason": ""}
    return AuditEvent(**(base | fields))


def _say(event: AuditEvent, **kwargs) -> str:
    return narrative.describe(event, narrative.Context([event], **kwargs)).text


def test_sign_in_and_account_events(ada):
    who = {"actor_id": ada.pk, "actor_username": "ada", "object_type": "accounts.user", "object_id": str(ada.pk)}
    assert _say(_event(action="login", **who)) == "Dr Ada Lovelace signed in"
    assert _say(_event(action="logout", **who)) == "Dr Ada Lovelace signed out"
    assert _say(_event(action="two_factor_enrolled", **who)) == "Dr Ada Lovelace set up two-factor sign-in"
    failed = _event(action="login_failed", object_type="accounts.user", object_repr="mallory")
    assert _say(failed) == "A sign-in as “mallory” failed (wrong username or password)"
    roles = _event(action="update", actor_username="root", object_type="accounts.user", object_repr="Bob Baker",
                   old_values={"groups": []}, new_values={"groups": ["technician"]})
    assert _say(roles) == "root changed the roles of Bob Baker from (none) to technician"


def test_patient_events(bob):
    created = _event(action="create", actor_id=bob.pk, actor_username="bob", object_type="cases.patient",
                     object_id="5", new_values={"mrn": "M-1", "family_name": "Okafor", "given_name": "Adaeze"})
    assert _say(created) == "Tech Bob Baker registered patient OKAFOR, Adaeze (MRN M-1)"
    changed = _event(action="update", actor_id=bob.pk, actor_username="bob", object_type="cases.patient",
                     object_repr="OKAFOR, Adaeze (M-1)", old_values={"sex": "U"}, new_values={"sex": "F"})
    assert _say(changed) == (
        "Tech Bob Baker changed the record of patient OKAFOR, Adaeze (M-1): sex from Unknown to Female"
    )


def test_sample_events(bob, sample):
    acc = sample.accession_number
    bob_did = {"actor_id": bob.pk, "actor_username": "bob", "object_type": "cases.sample", "object_id": str(sample.pk)}
    corrected = _event(action="update", old_values={"wbc_count": "3.00", "requesting_ward": ""},
                       new_values={"wbc_count": "4.50", "requesting_ward": "ICU"}, **bob_did)
    assert _say(corrected) == (
        f"Tech Bob Baker changed sample {acc}: WBC count (×10⁹/L) from 3.00 to 4.50; "
        "requesting ward from (empty) to ICU"
    )
    cancelled = _event(action="update", old_values={"status": "registered"}, new_values={"status": "cancelled"},
                       **bob_did)
    assert _say(cancelled) == f"Tech Bob Baker cancelled sample {acc}"
    refused = _event(action="signature_failed", **bob_did)
    assert _say(refused) == f"Tech Bob Baker tried to sign sample {acc}, but the password was refused"
    label = _event(action="download", reason="label downloaded", **bob_did)
    assert _say(label) == f"Tech Bob Baker downloaded the label of sample {acc}"


def test_cell_field_and_ai_events(story, ada):
    sample, (first, _, _) = story
    acc = sample.accession_number
    rejected = _event(action="update", actor_id=ada.pk, actor_username="ada", object_type="cases.cellimage",
                      object_id=str(first.pk), old_values={"rejected_at": None},
                      new_values={"rejected_at": "2026-01-01T10:00:00+00:00"})
    assert _say(rejected) == f"Dr Ada Lovelace rejected cell {first.pk} of sample {acc}: not a white cell"
    assert _say(rejected, sample_id=sample.pk) == f"Dr Ada Lovelace rejected cell {first.pk}: not a white cell"
    failed = _event(action="update", object_type="cases.cellimage", object_id=str(first.pk),
                    new_values={"status": "failed", "error_message": "model missing"})
    assert _say(failed) == f"Classification of cell {first.pk} of sample {acc} failed: model missing"
    prediction = first.predictions.get()
    ai = _event(action="create", object_type="classifier.prediction", object_id=str(prediction.pk),
                new_values={"image_id": first.pk, "model_version_id": prediction.model_version_id,
                            "predicted_class": "NEUTROPHIL", "confidence": 0.93, "unidentified": False})
    assert _say(ai) == f"The AI (test-model) classified cell {first.pk} of sample {acc} as Neutrophil, 93% sure"
    field = _event(action="update", object_type="cases.field", object_id="77",
                   new_values={"status": "detected", "white_cells_found": 4})
    assert _say(field) == "The detector found 4 white cells in field 77 of an unknown sample"


def test_unknown_events_get_a_generic_sentence_and_never_break(ada):
    odd = _event(action="model_shadow_on", actor_id=ada.pk, actor_username="ada",
                 object_type="classifier.modelversion", object_repr="v2")
    assert _say(odd) == "Dr Ada Lovelace: model shadow on (model version v2)"
    unknown_type = _event(action="create", object_type="nowhere.thing", object_repr="x1")
    assert _say(unknown_type) == "HematoVision created thing x1"
    for garbage in ({"image_id": "not a number", "final_class": None}, {"confidence": "high"}, ["a", "list"]):
        for object_type in ("review.cellreview", "classifier.prediction", "cases.sample", "cases.field"):
            for action in ("create", "update"):
                event = _event(action=action, object_type=object_type, object_id="x", new_values=garbage)
                assert _say(event)  # a sentence, whatever was stored
    gone = _event(action="login", actor_id=999_999, actor_username="deleted-user")
    assert _say(gone) == "deleted-user signed in"


def test_every_described_kind_has_a_sentence_test():
    """A describer added without a case above fails here (the list of kinds tested)."""
    tested = {
        ("cases.patient", "create"), ("cases.patient", "update"), ("cases.sample", "create"),
        ("cases.sample", "update"), ("cases.sample", "signature_failed"), ("cases.cellimage", "create"),
        ("cases.cellimage", "update"), ("cases.field", "create"), ("cases.field", "update"),
        ("classifier.prediction", "create"), ("classifier.prediction", "update"), ("review.cellreview", "create"),
        ("review.cellreview", "update"), ("review.signature", "create"), ("review.amendment", "create"),
        ("accounts.user", "update"),
    }
    assert set(narrative.DESCRIBERS) == tested
    assert set(narrative.ACTION_DESCRIBERS) == {"login", "logout", "login_failed", "two_factor_enrolled", "download"}


def test_field_upload_and_heatmap_sentences(bob, sample):
    upload = _event(action="create", actor_id=bob.pk, actor_username="bob", object_type="cases.field", object_id="3",
                    new_values={"sample_id": sample.pk, "original_filename": "f1.jpg"})
    acc = sample.accession_number
    assert _say(upload) == f"Tech Bob Baker uploaded a whole field (f1.jpg, field 3) to sample {acc}"
    heatmap = _event(action="update", object_type="classifier.prediction", object_id="9",
                     new_values={"heatmap": "heatmaps/x.png"})
    assert _say(heatmap).startswith("A heatmap was computed for cell")


# The audit trail page ----------------------------------------------------------------------------


def test_audit_page_tells_events_in_words_and_filters_them(client, admin_user, story, ada, bob):
    sample, (_, second, _) = story
    client.force_login(admin_user)
    url = reverse("audit-trail")
    body = client.get(url, {"actor_username": "ada", "action": "update"}).content.decode()
    assert f"Dr Ada Lovelace reclassified cell {second.pk} of sample {sample.accession_number}" in body
    assert "Tech Bob Baker uploaded" not in body
    today = timezone.localdate()
    later = today + datetime.timedelta(days=2)
    assert "No events match" in client.get(url, {"date_from": later.isoformat()}).content.decode()
    same_day = {"date_from": today.isoformat(), "date_to": today.isoformat()}
    assert "reclassified" in client.get(url, same_day).content.decode()
    bad = client.get(url, {"date_from": "not a date"})
    assert bad.status_code == 200 and "No events match" in bad.content.decode()


def test_audit_page_finds_a_sample_by_accession_and_links_its_history(client, admin_user, story):
    sample, (_, second, _) = story
    client.force_login(admin_user)
    page = client.get(reverse("audit-trail"), {"accession": sample.accession_number[-6:]})
    body = page.content.decode()
    assert reverse("sample-history", kwargs={"pk": sample.pk}) in body
    assert f"reclassified cell {second.pk}" in body  # the sample's cells too, not only the sample row
    record_event(action="login", actor=admin_user)
    only_sample = client.get(reverse("audit-trail"), {"accession": sample.accession_number})
    assert "signed in" not in only_sample.content.decode()
    assert "No sample with an accession" in client.get(reverse("audit-trail"), {"accession": "ZZZ"}).content.decode()


def test_every_filter_input_has_a_label(client, admin_user):
    client.force_login(admin_user)
    form = client.get(reverse("audit-trail")).context["filter"].form
    for bound in form:
        assert bound.label and bound.id_for_label, bound.name
