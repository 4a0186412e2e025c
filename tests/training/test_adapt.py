"""Candidate training for one lab (training/adapt.py): floor, whole-sample hold-out, comparison,
replay file, and a tiny real run on the committed cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.adapt import (
    AdaptConfig,
    CandidateFailed,
    LabeledCell,
    Replay,
    calibrate_holdout,
    check_floor,
    compare,
    split_by_sample,
)
from training.labs import FIVE, LABELS, OTHER

MODELS = Path(__file__).resolve().parents[2] / "classifier" / "models"


def test_floor_says_how_many_more_cells_each_short_class_needs():
    short = check_floor({"EOSINOPHIL": 60, "LYMPHOCYTE": 50, "MONOCYTE": 41, "NEUTROPHIL": 200}, floor=50)
    assert [(s.label, s.have, s.more_needed) for s in short] == [("MONOCYTE", 41, 9), ("BASOPHIL", 0, 50)]
    assert str(short[0]) == "MONOCYTE: 41 confirmed, 9 more needed (floor 50)"
    assert check_floor({c: 50 for c in FIVE}, floor=50) == []
    assert check_floor({"MONOCYTE": 3}, floor=5, classes=["MONOCYTE"])[0].more_needed == 2


@pytest.mark.parametrize("seed", range(5))
def test_holdout_keeps_every_sample_whole_and_on_one_side(seed):
    rng = np.random.default_rng(seed)
    cells = [
        LabeledCell(None, FIVE[rng.integers(5)], f"sample{rng.integers(12)}", f"cell{i}") for i in range(300)
    ]
    fit, held = split_by_sample(cells, holdout_fraction=0.2, seed=seed)
    assert len(fit) + len(held) == len(cells)
    assert not {c.group for c in fit} & {c.group for c in held}
    assert fit and held
    assert 0.1 <= len(held) / len(cells) <= 0.5


def test_holdout_refuses_a_single_sample():
    cells = [LabeledCell(None, "MONOCYTE", "only", f"c{i}") for i in range(10)]
    with pytest.raises(CandidateFailed, match="two signed samples"):
        split_by_sample(cells, holdout_fraction=0.2, seed=0)


def _probs(rows):
    p = np.asarray(rows, np.float64)
    return p / p.sum(axis=1, keepdims=True)


def test_compare_scores_both_models_as_served_and_lists_the_disagreements():
    classes = list(LABELS)
    e, ly, mo, ne, ba, ot = range(6)

    def one_hot(k, conf):
        row = np.full(6, (1 - conf) / 5)
        row[k] = conf
        return row

    labels = ["EOSINOPHIL", "EOSINOPHIL", "MONOCYTE", "MONOCYTE", OTHER]
    active = _probs([one_hot(e, 0.9), one_hot(ne, 0.9), one_hot(mo, 0.6), one_hot(ne, 0.9), one_hot(ly, 0.9)])
    candidate = _probs([one_hot(e, 0.9), one_hot(e, 0.9), one_hot(mo, 0.9), one_hot(mo, 0.6), one_hot(ot, 0.9)])
    c = compare(
        labels=labels, classes=classes, active_probs=active, active_threshold=0.7,
        candidate_probs=candidate, candidate_threshold=np.array([0.7, 0.7, 0.7, 0.7, 0.7]),
        names=["a", "b", "c", "d", "x"],
    )
    assert c.n == 5
    assert c.active.recall == {"EOSINOPHIL": 0.5, "MONOCYTE": 0.5}
    assert c.active.balanced_accuracy == 0.5
    assert c.active.flagged_fraction == 0.25  # cell c (0.6 < 0.7)
    assert c.active.unflagged_accuracy == pytest.approx(1 / 3)  # a right, b and d wrong
    assert c.active.other_flagged == 0.0  # the OTHER cell was confidently called a lymphocyte
    assert c.candidate.balanced_accuracy == 1.0
    assert c.candidate.flagged_fraction == 0.25 and c.candidate.unflagged_accuracy == 1.0
    assert c.candidate.other_flagged == 1.0  # its mass went to OTHER: flagged
    assert [d.name for d in c.disagreements] == ["b", "d", "x"]
    b = c.disagreements[0]
    assert (b.label, b.active, b.candidate, b.active_flagged) == ("EOSINOPHIL", "NEUTROPHIL", "EOSINOPHIL", False)
    json.dumps(c.to_dict())  # the page stores it as JSON


def test_replay_file_roundtrip_keeps_activations_to_a_quantisation_step(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.normal(0, 5, (12, 7, 7, 4)).astype(np.float32)
    r = Replay.from_activations(acts, np.arange(12) % 6, classes=LABELS, cut="block6d_add", model_sha256="abc",
                                source="test")
    back = Replay.load(r.save(tmp_path / "r.npz"))
    assert back.classes == LABELS and back.model_sha256 == "abc" and list(back.labels) == list(np.arange(12) % 6)
    step = (acts.max(axis=(0, 1, 2)) - acts.min(axis=(0, 1, 2))) / 255
    assert np.all(np.abs(back.activations().astype(np.float32) - acts) <= step * 0.51 + 0.02)


@pytest.mark.slow
def test_tiny_candidate_from_committed_cells_has_its_own_calibration_and_reports_every_epoch(tmp_path):
    from classifier.inference import Classifier
    from training.adapt import train_candidate
    from training.card_cells import fixture_cells

    card = json.loads((MODELS / "wbc-lite0-v3.json").read_text())
    cells = [LabeledCell(str(p), label, f"sample{i % 4}", p.name) for i, (label, p) in enumerate(fixture_cells())]
    fit, held = split_by_sample(cells, holdout_fraction=0.25, seed=1)
    seen = []
    result = train_candidate(
        base_model=MODELS / "wbc-lite0-v3.keras", base_card=card, train_cells=fit, holdout_cells=held,
        name="tiny", out_dir=tmp_path, progress=seen.append, config=AdaptConfig(epochs=2, views=1, batch_size=16),
    )
    assert [p.epoch for p in seen if p.stage == "training"] == [1, 2]
    assert all(p.loss is not None and p.eta_s is not None for p in seen if p.stage == "training")
    assert seen[0].stage == "activations" and seen[-1].stage == "saving"
    out = result.card
    assert out["classes"] == list(LABELS) and out["input_method"] == card["input_method"]
    assert out["supersedes"] == "wbc-lite0-v3" and "export" not in out
    y = np.array([LABELS.index(c.label) for c in held])
    refit = calibrate_holdout(result.holdout_logits, y)
    assert out["calibration"]["temperature"] == refit["temperature"]  # fitted on the candidate's held-out logits
    assert out["calibration"]["threshold"] == refit["threshold"]
    assert out["adaptation"]["train_samples"] + out["adaptation"]["holdout_samples"] == 4
    assert result.comparison.n == len(held)
    # the saved candidate loads and serves through the production code with its card
    clf = Classifier(result.model_path, result.card_path, runtime="keras")
    from PIL import Image

    preds = clf.predict(images=[Image.open(p) for _, p in fixture_cells()[:3]])
    assert len(preds) == 3 and clf.temperature == out["calibration"]["temperature"]


@pytest.mark.slow
def test_candidate_refuses_a_replay_file_of_another_model_and_unknown_labels():
    from training.adapt import train_candidate

    card = json.loads((MODELS / "wbc-lite0-v3.json").read_text())
    cells = [LabeledCell(np.zeros((224, 224, 3), np.uint8), "MONOCYTE", f"s{i}", f"c{i}") for i in range(4)]
    other = Replay.from_activations(np.zeros((1, 7, 7, 192)), np.array([0]), classes=LABELS, cut="block6d_add",
                                    model_sha256="0" * 64, source="elsewhere")
    with pytest.raises(CandidateFailed, match="another model"):
        train_candidate(base_model=MODELS / "wbc-lite0-v3.keras", base_card=card, train_cells=cells[:2],
                        holdout_cells=cells[2:], replay=other)
    odd = [LabeledCell(np.zeros((224, 224, 3), np.uint8), "BLAST", "s9", "c9")]
    with pytest.raises(CandidateFailed, match="BLAST"):
        train_candidate(base_model=MODELS / "wbc-lite0-v3.keras", base_card=card, train_cells=cells[:2] + odd,
                        holdout_cells=cells[2:])
