from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.preprocessing import CLASSES
from training.data import Split, class_weights, group_key, grouped_split, list_images, resolve_sources
from training.metrics import (
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    per_original_accuracy,
    softmax,
    threshold_stats,
)
from training.sources import UNMATCHED

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells"


def test_group_key_is_the_recovered_original_else_the_file_itself():
    sources = {"EOSINOPHIL/_12_3456.jpeg": "BloodImage_00093", "EOSINOPHIL/_7_1.jpeg": "BloodImage_00093"}
    # two files with different n but the same original share a group
    assert group_key("x/EOSINOPHIL/_12_3456.jpeg", 0, sources) == "EOSINOPHIL/BloodImage_00093"
    assert group_key("x/EOSINOPHIL/_7_1.jpeg", 0, sources) == "EOSINOPHIL/BloodImage_00093"
    # no mapping: the file name's n means nothing, so the file is its own group
    assert group_key("x/NEUTROPHIL/_12_99.jpeg", 3) == "NEUTROPHIL/_12_99"
    assert group_key("x/NEUTROPHIL/_12_98.jpeg", 3) != group_key("x/NEUTROPHIL/_12_99.jpeg", 3)


def test_list_images_with_sources_drops_unmatched_files_and_groups_by_original():
    names = [f"{c}/{p.name}" for c in CLASSES for p in sorted((CELLS / c).iterdir())]
    sources = {n: f"orig{i % 3}" for i, n in enumerate(names)}
    sources[names[0]] = UNMATCHED
    del sources[names[1]]  # unknown to the CSV: also left out
    data = list_images(CELLS, sources=sources)
    assert len(data.paths) == len(names) - 2
    assert {g.split("/")[1] for g in data.groups} == {"orig0", "orig1", "orig2"}


def test_resolve_sources_auto_ignores_a_folder_the_committed_csv_does_not_describe(tmp_path):
    sources, how = resolve_sources(CELLS, "auto")
    assert sources is None and how.startswith("none")
    csv = tmp_path / "s.csv"
    csv.write_text("file,source,inliers,runner_up\nEOSINOPHIL/a.jpeg,BloodImage_00001,40,3\nEOSINOPHIL/b.jpeg,unmatched,4,3\n")
    sources, how = resolve_sources(CELLS, str(csv))
    assert sources == {"EOSINOPHIL/a.jpeg": "BloodImage_00001", "EOSINOPHIL/b.jpeg": UNMATCHED}
    assert "1 unmatched" in how
    assert resolve_sources(CELLS, "none")[0] is None


def test_grouped_split_keeps_groups_together_and_covers_every_class():
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in range(len(CLASSES)):
        for g in range(10):
            for a in range(rng.integers(3, 8)):
                paths.append(f"/d/{CLASSES[c]}/_{g}_{a}.jpeg")
                labels.append(c)
    data = Split(paths, np.array(labels), [group_key(p, y) for p, y in zip(paths, labels, strict=True)])
    train, val = grouped_split(data, 0.2, seed=3)
    assert not set(train.groups) & set(val.groups)
    assert len(train.paths) + len(val.paths) == len(paths)
    assert set(val.labels.tolist()) == set(range(len(CLASSES)))
    again = grouped_split(data, 0.2, seed=3)[1]
    assert again.paths == val.paths  # deterministic


def test_list_images_and_limit_per_class():
    data = list_images(CELLS, limit_per_class=2)
    assert np.bincount(data.labels).tolist() == [2, 2, 2, 2]
    assert class_weights(data.labels) == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}


def test_metrics_on_known_confusion():
    labels = np.array([0, 0, 1, 1, 2, 3])
    probs = np.eye(4)[[0, 1, 1, 1, 2, 3]] * 0.9 + 0.025
    m = classification_metrics(probs, labels)
    assert m["accuracy"] == 5 / 6
    assert m["per_class"]["EOSINOPHIL"]["recall"] == 0.5
    assert m["per_class"]["LYMPHOCYTE"]["precision"] == 2 / 3
    assert m["confusion_matrix"]["rows_true_cols_pred"][0] == [1, 1, 0, 0]
    assert abs(m["balanced_accuracy"] - (0.5 + 1 + 1 + 1) / 4) < 1e-12


def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(1)
    n = 4000
    true_logits = rng.normal(size=(n, 4)) * 2.0
    labels = np.array([rng.choice(4, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, labels)  # a model 3x overconfident
    assert abs(t - 3.0) < 0.3
    calibrated = softmax(true_logits * 3.0, t)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(
        softmax(true_logits * 3.0), labels
    )


def test_threshold_choice_and_stats():
    probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.55, 0.45, 0, 0], [0.3, 0.6, 0.05, 0.05], [0.9, 0.1, 0, 0]])
    labels = np.array([0, 1, 1, 0])
    t, rule = choose_threshold(probs, labels, target_accuracy=0.99, max_flagged=0.5)
    assert 0.55 < t <= 0.6 and rule
    s = threshold_stats(probs, labels, t)
    assert s["errors"] == 1 and s["errors_caught"] == 1 and s["flagged"] == 1


def test_per_original_accuracy_counts_each_original_once():
    # original a (EOSINOPHIL): 3 copies, 2 wrong but the mean probability still picks EOSINOPHIL
    # original b (LYMPHOCYTE): 1 copy, wrong; one file with no known original is skipped
    probs = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],
            [0.4, 0.6, 0.0, 0.0],
            [0.45, 0.55, 0.0, 0.0],
            [0.0, 0.2, 0.8, 0.0],
            [0.0, 1.0, 0.0, 0.0],
        ]
    )
    labels = np.array([0, 0, 0, 1, 1])
    r = per_original_accuracy(probs, labels, ["E/a", "E/a", "E/a", "L/b", None])
    assert (r["originals"], r["correct"], r["accuracy"], r["files_counted"]) == (2, 1, 0.5, 4)
    assert r["per_class_correct_of"]["EOSINOPHIL"] == [1, 1]
    assert r["per_class_correct_of"]["LYMPHOCYTE"] == [0, 1]
