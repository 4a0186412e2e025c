"""The factories build records the way the services do, so tests built on them see real states."""
import pytest

from audit.chain import chain_verify
from cases.models import ImageStatus, SampleStatus
from review.models import Signature

from .factories import (
    CellImageFactory,
    CellReviewFactory,
    ModelVersionFactory,
    PredictionFactory,
    SampleFactory,
    SignatureFactory,
)

pytestmark = pytest.mark.django_db


def test_cell_image_is_uploaded_through_the_service(technician):
    sample = SampleFactory()
    first = CellImageFactory(sample=sample, uploaded_by=technician)
    second = CellImageFactory(sample=sample, uploaded_by=technician, status=ImageStatus.CLASSIFIED)
    sample.refresh_from_db()
    assert sample.status == SampleStatus.IMAGES_UPLOADED
    assert first.sha256 != second.sha256 and first.file.name.endswith(".png")
    assert (first.status, second.status) == (ImageStatus.QUEUED, ImageStatus.CLASSIFIED)


def test_unidentified_prediction_is_below_its_model_threshold():
    version = ModelVersionFactory(threshold=0.6)
    sure = PredictionFactory(model_version=version, predicted_class="MONOCYTE")
    unsure = PredictionFactory(model_version=version, unidentified=True, with_heatmap=True)
    assert sure.confidence >= version.threshold > unsure.confidence
    assert max(sure.probabilities, key=sure.probabilities.get) == "MONOCYTE"
    assert abs(sum(sure.probabilities.values()) - 1) < 1e-9
    assert unsure.heatmap and not sure.heatmap


def test_cell_review_confirms_the_ai_class_by_default():
    review = CellReviewFactory()
    assert review.final_class == review.ai_class == "NEUTROPHIL"
    assert CellReviewFactory(final_class="EXCLUDED").final_class == "EXCLUDED"


def test_signatures_are_signed_through_the_service_and_chained():
    first = SignatureFactory()
    amended = SignatureFactory(sample=first.sample, amendment_reason="wrong count")
    first.sample.refresh_from_db()
    assert first.sample.status == SampleStatus.SIGNED
    assert (first.version, amended.version, amended.amendment_reason) == (1, 2, "wrong count")
    assert amended.prev_hash == first.hash
    assert chain_verify(model=Signature).ok
