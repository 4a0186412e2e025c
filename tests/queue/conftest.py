import io

import pytest
from PIL import Image

from classifier.inference import CellPrediction
from classifier.models import ModelVersion


class FakeClassifier:
    """Stands in for the Keras model in unit tests of the queueing logic (not of the model)."""

    sha256 = "f" * 64

    def __init__(self):
        self.calls = 0

    def predict(self, *, images, with_heatmap=True):
        self.calls += 1
        out = []
        for img in images:
            buf = io.BytesIO()
            Image.new("RGBA", img.size, (255, 0, 0, 128)).save(buf, "PNG")
            probs = {"EOSINOPHIL": 0.7, "LYMPHOCYTE": 0.1, "MONOCYTE": 0.1, "NEUTROPHIL": 0.1}
            out.append(CellPrediction("EOSINOPHIL", probs, 0.7, False, buf.getvalue(), 12.5, cell_found=True))
        return out


@pytest.fixture
def fake_model(db, monkeypatch):
    version = ModelVersion.objects.create(
        name="fake-v1", file_path="/nonexistent.keras", sha256="f" * 64, threshold=0.5, is_active=True
    )
    clf = FakeClassifier()
    monkeypatch.setattr("classifier.services._load_active_classifier", lambda v: clf)
    return version, clf
