"""The shipped model: integrity, accuracy on committed real cells of two labs, "none of these"
cells flagged, calibrated outputs, Grad-CAM placed on the found cell; older versions still load."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from cases.cell_classes import CELL_CLASSES
from classifier.inference import (
    MODELS_DIR,
    OTHER,
    CellPrediction,
    default_card_path,
    default_model_path,
    load_classifier,
    sha256_of,
)
from classifier.preprocessing import CELL_CROP, CLASSES, FRAME
from training.card_cells import fixture_cells

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(default_card_path().read_text())


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


@pytest.fixture(scope="module")
def fixture_predictions(clf):
    cells = fixture_cells()
    return cells, clf.predict(images=[Image.open(p) for _, p in cells], with_heatmap=False)


def test_shipped_model_sha256_matches_card(card):
    path = default_model_path()
    assert path.exists() and card["file"] == path.name
    assert sha256_of(path) == card["sha256"]
    assert path.stat().st_size < 50e6


def test_card_describes_five_classes_other_labs_and_data(card):
    assert card["classes"] == [*CELL_CLASSES, OTHER]
    assert card["input_method"] == CELL_CROP
    assert card["calibration"]["temperature"] > 0 and 0.0 <= card["calibration"]["threshold"] < 1.0
    assert set(card["calibration"]["validation_per_lab"]) == {"bccd", "pbc"}
    for test in ("BCCD TEST", "BCCD TEST_SIMPLE", "PBC test"):
        m = card["metrics"][test]
        assert {"five", "four", "open_set"} <= set(m)
        assert 0.0 <= m["open_set"]["five_class_flagged"] <= 1.0
    assert 0.0 <= card["metrics"]["PBC test"]["open_set"]["other_flagged"] <= 1.0
    assert {row["trained_on"] for row in card["lab_by_lab"]} == {"BCCD", "PBC", "both"}
    assert {d["licence"] for d in card["datasets"]} == {"MIT", "CC BY 4.0"}
    assert default_model_path().with_suffix(".md").exists()


def test_loader_is_cached_and_reads_card(clf, card):
    assert load_classifier() is clf
    assert clf.sha256 == card["sha256"] and clf.version_name == card["name"]
    assert clf.temperature == pytest.approx(card["calibration"]["temperature"])
    assert clf.threshold == pytest.approx(card["calibration"]["threshold"])
    assert clf.method == CELL_CROP


def test_accuracy_on_committed_cells_of_both_labs_matches_card(fixture_predictions, card, clf):
    cells, preds = fixture_predictions
    five = [(label, p) for (label, _), p in zip(cells, preds, strict=True) if label in CELL_CLASSES]
    claimed = card["metrics"]["fixture_cells"]
    assert claimed["n"] == len(five)
    acc = np.mean([p.label == label for label, p in five])
    assert abs(acc - claimed["accuracy"]) <= 1.0 / len(five) + 1e-9
    for p in preds:
        assert isinstance(p, CellPrediction)
        assert p.label in CELL_CLASSES  # never OTHER: that is what the flag is for
        assert set(p.probabilities) == {*CELL_CLASSES, OTHER}
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.confidence == pytest.approx(p.probabilities[p.label])
        assert p.label == max(CELL_CLASSES, key=p.probabilities.get)
        assert p.unidentified == (p.confidence < clf.threshold)
        assert p.heatmap_png == b"" and p.inference_ms > 0
        assert p.cell_found is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        preds[0].label = "X"  # type: ignore[misc]


def test_none_of_these_cells_are_flagged(fixture_predictions, card):
    cells, preds = fixture_predictions
    other = [p for (label, _), p in zip(cells, preds, strict=True) if label == OTHER]
    assert len(other) == card["metrics"]["fixture_cells"]["other_n"] == 6
    flagged = np.mean([p.unidentified for p in other])
    assert flagged == pytest.approx(card["metrics"]["fixture_cells"]["other_flagged"])
    assert flagged >= 0.8


def test_an_image_without_a_white_cell_is_classified_whole_and_says_so(clf):
    pred = clf.predict(images=[Image.new("RGB", (320, 240), (232, 226, 230))], with_heatmap=False)[0]
    assert pred.cell_found is False and pred.label in CELL_CLASSES


def test_gradcam_heatmap_has_the_input_size_and_sits_on_the_cell(clf):
    src = Image.open(fixture_cells()[0][1])
    odd = src.resize((301, 197))
    gray = src.convert("L")
    preds = clf.predict(images=[src, odd, gray], with_heatmap=True)
    for img, pred in zip((src, odd, gray), preds, strict=True):
        heat = Image.open(io.BytesIO(pred.heatmap_png))
        assert heat.format == "PNG" and heat.mode == "RGBA" and heat.size == img.size
        assert np.asarray(heat)[..., 3].max() > 100
    plain = clf.predict(images=[src], with_heatmap=False)[0]
    assert plain.label == preds[0].label
    assert plain.confidence == pytest.approx(preds[0].confidence, abs=1e-5)


def test_predict_empty_batch(clf):
    assert clf.predict(images=[]) == []


@pytest.mark.parametrize("name", ["wbc-lite0-v1", "wbc-lite0-v2"])
def test_superseded_four_class_versions_still_load_and_predict(name):
    """Predictions keep the version that made them: old versions stay servable and traceable."""
    old = load_classifier(model_path=MODELS_DIR / f"{name}.keras")
    assert old.method == FRAME and old.classes == CLASSES
    pred = old.predict(images=[Image.open(fixture_cells()[0][1])], with_heatmap=False)[0]
    assert pred.label in CLASSES and pred.cell_found is None and set(pred.probabilities) == set(CLASSES)


# --------------------------------------------------------------------------- exported graph


def test_card_names_the_exported_graph_and_serving_uses_it(clf, card):
    export = card["export"]
    path = default_model_path().parent / export["file"]
    assert path.exists() and sha256_of(path) == export["sha256"]
    assert export["source_sha256"] == card["sha256"]
    assert clf.runtime == "litert"


def test_exported_graph_gives_the_keras_classes_and_probabilities(clf, card):
    """Same classes, probabilities within 1e-4, on real cells of both labs."""
    from classifier.inference import Classifier

    keras_clf = Classifier(default_model_path(), default_card_path(), runtime="keras")
    images = [Image.open(p) for _, p in fixture_cells()]
    exported = clf.predict(images=images)
    reference = keras_clf.predict(images=images)
    for a, b in zip(exported, reference, strict=True):
        assert a.label == b.label and a.unidentified == b.unidentified
        for c in a.probabilities:
            assert abs(a.probabilities[c] - b.probabilities[c]) < 1e-4


def test_an_exported_graph_that_is_not_the_carded_one_is_refused(tmp_path, card):
    import shutil

    from classifier.inference import Classifier

    for f in (default_model_path(), default_card_path()):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / card["export"]["file"]).write_bytes(b"not the exported graph")
    with pytest.raises(ValueError, match="does not match its card"):
        Classifier(tmp_path / default_model_path().name, tmp_path / default_card_path().name)
    # without the file, serving falls back to Keras (the source of truth); asking for LiteRT fails
    (tmp_path / card["export"]["file"]).unlink()
    assert Classifier(tmp_path / default_model_path().name, tmp_path / default_card_path().name).runtime == "keras"
    with pytest.raises(ValueError, match="no exported graph"):
        Classifier(tmp_path / default_model_path().name, tmp_path / default_card_path().name, runtime="litert")


def test_heatmaps_on_demand_match_the_single_pass_ones(clf):
    images = [Image.open(p) for _, p in fixture_cells()[:3]]
    single = clf.predict(images=images, with_heatmap=True)
    later = clf.heatmaps(images=images, labels=[p.label for p in single])
    for a, b in zip(single, later, strict=True):
        x = np.asarray(Image.open(io.BytesIO(a.heatmap_png)), float)
        y = np.asarray(Image.open(io.BytesIO(b)), float)
        assert np.abs(x - y).max() <= 1.0
