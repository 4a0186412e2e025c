"""Calibration and the card's figures, from logits (no model needed)."""

import numpy as np
import pytest

from training.evaluate_cells import calibrate, choose_threshold, softmax, split_metrics, suggest
from training.labs import LABELS, OTHER

N = len(LABELS)


def _logits(labels, margin, rng):
    z = rng.normal(0, 1, (len(labels), N))
    z[np.arange(len(labels)), labels] += margin
    return z


def test_suggestion_is_the_best_of_the_five_and_other_lowers_its_confidence():
    probs = softmax(np.array([[0.0, 0.0, 0.0, 0.0, 1.0, 5.0]]))
    k, conf = suggest(probs)
    assert LABELS[k[0]] == "BASOPHIL" and conf[0] < 0.05  # OTHER took the mass: flagged at any threshold


def test_threshold_keeps_unflagged_cells_right_and_caps_what_is_flagged():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 600)
    labs = np.array(["a"] * 300 + ["b"] * 300)
    logits = _logits(labels, np.where(labs == "a", 4.0, 1.5), rng)
    w = np.ones(len(labels))
    t, info = choose_threshold(softmax(logits), labels, labs, w, max_flagged=0.15)
    assert info["per_lab"]["b"]["flagged"] <= 0.15 + 1e-9
    assert info["per_lab"]["a"]["unflagged_accuracy"] >= info["per_lab"]["b"]["unflagged_accuracy"]
    easy = np.where(labs == "a")[0]
    t_easy, info_easy = choose_threshold(softmax(logits[easy]), labels[easy], labs[easy], w[easy])
    assert info_easy["per_lab"]["a"]["unflagged_accuracy"] >= 0.97 and t_easy <= t + 1e-9


def test_calibration_weights_cells_not_copies():
    """Ten augmented copies of one wrong cell weigh as much as one cell."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 200)
    logits = _logits(labels, 3.0, rng)
    groups = np.array([f"g{i}" for i in range(200)])
    labs = np.array(["pbc"] * 200)
    base = calibrate(logits, labels, labs, groups)
    wrong = _logits(np.array([(labels[0] + 1) % 5] * 10), 8.0, rng)  # confidently wrong, 10 copies of one cell
    copies = calibrate(
        np.concatenate([logits, wrong]),
        np.concatenate([labels, [labels[0]] * 10]),
        np.concatenate([labs, ["pbc"] * 10]),
        np.concatenate([groups, ["g0"] * 10]),
    )
    assert copies["temperature"] == pytest.approx(base["temperature"], rel=0.25)


def test_test_set_metrics_open_set_and_four_class_figures():
    rng = np.random.default_rng(2)
    labels = np.concatenate([rng.integers(0, 5, 100), np.full(20, LABELS.index(OTHER))])
    logits = _logits(labels, 4.0, rng)
    kinds = np.array(["x"] * 100 + ["ig"] * 10 + ["platelet"] * 10)
    m = split_metrics(logits, labels, kinds, temperature=1.0, threshold=0.5)
    assert m["five"]["n"] == 100 and m["four"]["n"] == int((labels < 4).sum())
    assert m["open_set"]["other_cells"] == 20 and m["open_set"]["other_flagged"] > 0.8
    assert set(m["open_set"]["other_flagged_by_kind"]) == {"ig", "platelet"}
    assert 0.9 < m["five"]["balanced_accuracy"] <= 1.0
