"""The shipped model: integrity, accuracy on committed real cells, calibrated outputs, Grad-CAM."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.inference import (
    CLASSES,
    CellPrediction,
    default_card_path,
    default_model_path,
    load_classifier,
    sha256_of,
)

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(default_card_path().read_text())


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


def _cells():
    for cls in CLASSES:
        for path in sorted((CELLS / cls).glob("*.jpeg")):
            yield cls, path


def test_shipped_model_sha256_matches_card(card):
    path = default_model_path()
    assert path.exists()
    assert card["file"] == path.name
    assert sha256_of(path) == card["sha256"]
    assert path.stat().st_size < 50e6


def test_card_holds_calibration_and_separate_test_metrics(card):
    assert card["classes"] == list(CLASSES)
    assert card["calibration"]["temperature"] > 0
    assert 0.0 <= card["calibration"]["threshold"] < 1.0
    for split in ("test", "test_simple"):
        m = card["metrics"][split]
        assert set(m["per_class"]) == set(CLASSES)
        assert "ece" in m and "unidentified" in m
    assert default_model_path().with_suffix(".md").exists()


def test_loader_is_cached_and_reads_card(clf, card):
    assert load_classifier() is clf
    assert clf.sha256 == card["sha256"]
    assert clf.version_name == card["name"]
    assert clf.temperature == pytest.approx(card["calibration"]["temperature"])
    assert clf.threshold == pytest.approx(card["calibration"]["threshold"])


def test_shipped_model_accuracy_on_committed_cells_matches_card(clf, card):
    cells = list(_cells())
    images = [Image.open(p) for _, p in cells]
    preds = clf.predict(images=images, with_heatmap=False)
    acc = np.mean([p.label == cls for (cls, _), p in zip(cells, preds, strict=True)])
    claimed = card["metrics"]["fixture_cells"]["accuracy"]
    assert card["metrics"]["fixture_cells"]["n"] == len(cells)
    assert abs(acc - claimed) <= 1.0 / len(cells) + 1e-9
    for p in preds:
        assert isinstance(p, CellPrediction)
        assert p.label in CLASSES
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.confidence == pytest.approx(max(p.probabilities.values()))
        assert p.label == max(p.probabilities, key=p.probabilities.get)
        assert p.unidentified == (p.confidence < clf.threshold)
        assert p.heatmap_png == b""
        assert p.inference_ms > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        preds[0].label = "X"  # type: ignore[misc]


def test_gradcam_heatmap_has_the_input_size(clf):
    src = Image.open(next(CELLS.glob("EOSINOPHIL/*.jpeg")))
    odd = src.resize((301, 197))
    rotated_exif = src.convert("L")
    preds = clf.predict(images=[src, odd, rotated_exif], with_heatmap=True)
    for img, pred in zip((src, odd, rotated_exif), preds, strict=True):
        heat = Image.open(io.BytesIO(pred.heatmap_png))
        assert heat.format == "PNG" and heat.mode == "RGBA"
        assert heat.size == img.size
        alpha = np.asarray(heat)[..., 3]
        assert alpha.max() > 100  # some region is highlighted
    # the heatmap does not change the prediction
    plain = clf.predict(images=[src], with_heatmap=False)[0]
    assert plain.label == preds[0].label
    assert plain.confidence == pytest.approx(preds[0].confidence, abs=1e-5)


def test_predict_empty_batch(clf):
    assert clf.predict(images=[]) == []
