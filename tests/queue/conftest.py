import io

import pytest
from PIL import Image

from classifier.inference import CellPrediction

from ..factories import ModelVersionFactory


class FakeClassifier:
    """Stands in for the Keras model in unit tests of the queueing logic (not of the model)."""

    sha256 = "f" * 64

    def __init__(self):
        self.calls = 0
        self.heatmap_calls: list[list[str]] = []

    @staticmethod
    def _png(img) -> bytes:
        buf = io.BytesIO()
        Image.new("RGBA", img.size, (255, 0, 0, 128)).save(buf, "PNG")
        return buf.getvalue()

    def predict(self, *, images, with_heatmap=False):
        self.calls += 1
        out = []
        for img in images:
            png = self._png(img) if with_heatmap else b""
            probs = {"EOSINOPHIL": 0.7, "LYMPHOCYTE": 0.1, "MONOCYTE": 0.1, "NEUTROPHIL": 0.1}
            out.append(CellPrediction("EOSINOPHIL", probs, 0.7, False, png, 12.5, cell_found=True))
        return out

    def heatmaps(self, *, images, labels):
        self.heatmap_calls.append(list(labels))
        return [self._png(img) for img in images]


@pytest.fixture
def fake_model(db, monkeypatch):
    version = ModelVersionFactory(name="fake-v1", sha256=FakeClassifier.sha256, threshold=0.5, is_active=True)
    clf = FakeClassifier()
    monkeypatch.setattr("classifier.services._load_active_classifier", lambda v: clf)
    return version, clf
