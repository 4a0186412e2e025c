"""Shadow mode (issue 16): a candidate's predictions are stored beside the served ones, never shown to
a reviewer, and the agreement dashboard shows both models against the doctors' final labels."""
from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cases.errors import InvalidState, NotAllowed
from cases.models import CellImage, ImageStatus, SampleStatus
from cases.services import images_upload
from classifier import adaptation, services
from classifier.inference import CellPrediction
from classifier.models import ModelVersion, Prediction
from classifier.selectors import latest_prediction
from review import services as reviews

from ..factories import PASSWORD, ModelVersionFactory


class TwoModels:
    """The served model always says EOSINOPHIL, the shadow one MONOCYTE (unit tests of the queue)."""

    def __init__(self):
        self.loaded: list[str] = []
        self.fail_shadow = False

    def load(self, version):
        self.loaded.append(version.name)
        label = "EOSINOPHIL" if version.is_active else "MONOCYTE"
        if not version.is_active and self.fail_shadow:
            raise OSError("shadow model file missing")
        return _Fixed(label)


class _Fixed:
    def __init__(self, label):
        self.label = label

    def predict(self, *, images, with_heatmap=False):
        probs = {c: (0.8 if c == self.label else 0.05) for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")}
        return [CellPrediction(self.label, probs, 0.8, False, b"", 5.0, cell_found=True) for _ in images]


@pytest.fixture
def models(db, monkeypatch):
    served = ModelVersionFactory(name="served", is_active=True)
    shadow = ModelVersionFactory(name="candidate")
    fake = TwoModels()
    monkeypatch.setattr("classifier.services._load_active_classifier", fake.load)
    return served, shadow, fake


def _classified_sample(technician, sample, cell_files, n=3):
    ids = [i.pk for i in images_upload(actor=technician, sample=sample,
                                       files=[(p.name, p.read_bytes()) for p in cell_files[:n]]).accepted]
    services.classify_images(image_ids=ids)
    sample.refresh_from_db()
    return ids


@pytest.mark.django_db
def test_shadow_predictions_are_stored_beside_the_served_ones_and_never_served(
    request, admin_user, technician, sample, cell_files, models
):
    served, shadow, _ = models
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    ids = _classified_sample(technician, sample, cell_files)
    assert sample.status == SampleStatus.AWAITING_REVIEW
    for image in CellImage.objects.filter(pk__in=ids):
        rows = {p.model_version.name: p for p in image.predictions.all()}
        assert set(rows) == {"served", "candidate"}
        assert rows["served"].served and not rows["candidate"].served
        assert rows["candidate"].predicted_class == "MONOCYTE"
        # the shadow prediction is the newest, yet the one the review shows is the served one
        assert latest_prediction(image=image).model_version == served
    # Grad-CAM only for what reviewers see
    asked = [pk for batch in request.node.enqueued_heatmaps for pk in batch]
    assert set(Prediction.objects.filter(pk__in=asked).values_list("served", flat=True)) == {True}


@pytest.mark.django_db
def test_reviewer_pages_and_api_never_show_the_shadow_model(
    client, admin_user, doctor, technician, sample, cell_files, models
):
    _, shadow, _ = models
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    ids = _classified_sample(technician, sample, cell_files)
    client.force_login(doctor)
    html = client.get(reverse("sample-review", args=[sample.pk])).content.decode()
    assert "candidate" not in html and "Monocyte (" not in html
    api = APIClient()
    api.force_login(doctor)
    images = api.get(reverse("api:sample-images", args=[sample.pk])).json()["results"]
    assert {i["prediction"]["model_version"]["name"] for i in images} == {"served"}
    assert {i["prediction"]["predicted_class"] for i in images} == {"EOSINOPHIL"}
    review = api.get(reverse("api:sample-review", args=[sample.pk])).content.decode()
    assert "candidate" not in review
    # the doctor's verdict records the served suggestion
    image = CellImage.objects.get(pk=ids[0])
    assert reviews.cell_review(actor=doctor, image=image, final_class="MONOCYTE").ai_class == "EOSINOPHIL"


@pytest.mark.django_db
def test_a_failing_shadow_model_never_costs_the_served_classification(
    admin_user, technician, sample, cell_files, models
):
    _, shadow, fake = models
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    fake.fail_shadow = True
    ids = _classified_sample(technician, sample, cell_files)
    assert set(CellImage.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ImageStatus.CLASSIFIED}
    assert not Prediction.objects.filter(served=False).exists()


@pytest.mark.django_db
def test_one_shadow_at_a_time_never_the_active_one_and_admins_only(admin_user, doctor, models):
    served, shadow, _ = models
    other = ModelVersionFactory(name="other")
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    adaptation.model_version_shadow_set(actor=admin_user, version=other)
    assert list(ModelVersion.objects.filter(is_shadow=True)) == [other]
    with pytest.raises(InvalidState):
        adaptation.model_version_shadow_set(actor=admin_user, version=served)
    with pytest.raises(NotAllowed):
        adaptation.model_version_shadow_set(actor=doctor, version=shadow)
    adaptation.model_version_shadow_clear(actor=admin_user, version=other)
    assert not ModelVersion.objects.filter(is_shadow=True).exists()
    actions = list(AuditEvent.objects.filter(action__startswith="model_shadow").order_by("pk")
                   .values_list("action", "object_repr"))
    assert [a for a, _ in actions] == ["model_shadow_on", "model_shadow_off", "model_shadow_on", "model_shadow_off"]


@pytest.mark.django_db
def test_activating_the_shadow_model_ends_its_shadow(admin_user, models):
    _, shadow, _ = models
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    adaptation.model_version_activate_signed(actor=admin_user, version=shadow, password=PASSWORD, reason="evidence")
    shadow.refresh_from_db()
    assert shadow.is_active and not shadow.is_shadow


@pytest.mark.django_db
def test_shadow_toggle_page_and_api(client, admin_user, models):
    _, shadow, _ = models
    client.force_login(admin_user)
    assert client.post(reverse("model-shadow", args=[shadow.pk]), {"shadow": "on"}).status_code == 302
    shadow.refresh_from_db()
    assert shadow.is_shadow
    api = APIClient()
    api.force_login(admin_user)
    body = api.post(reverse("api:modelversion-shadow", args=[shadow.pk]), {"shadow": False}, format="json").json()
    assert body["is_shadow"] is False


@pytest.mark.django_db
def test_agreement_dashboard_shows_both_models_against_the_final_labels(
    client, admin_user, doctor, technician, sample, cell_files, models
):
    _, shadow, _ = models
    adaptation.model_version_shadow_set(actor=admin_user, version=shadow)
    ids = _classified_sample(technician, sample, cell_files)
    # the doctors call two cells monocytes (the shadow model was right) and one an eosinophil
    for pk, final in zip(ids, ["MONOCYTE", "MONOCYTE", "EOSINOPHIL"], strict=True):
        reviews.cell_review(actor=doctor, image=CellImage.objects.get(pk=pk), final_class=final)
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    client.force_login(doctor)
    html = client.get(reverse("agreement")).content.decode()
    assert "Shadow model candidate vs served served, on the same 3 cells" in html
    assert "1 (33%)" in html and "2 (67%)" in html
    assert "Model candidate (in shadow, never shown to reviewers)" in html
    api = APIClient()
    api.force_login(admin_user)
    tables = {(t["model_version"], t["served"]): t for t in api.get(reverse("api:agreement")).json()}
    assert tables[("served", True)]["agreed"] == 1 and tables[("candidate", False)]["agreed"] == 2
