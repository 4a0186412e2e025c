"""A tiny end-to-end run: train (both phases, one epoch each) on the committed cells,
then evaluate the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main

pytestmark = pytest.mark.slow  # trains / runs the backbone

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells"


def test_tiny_training_run_produces_loadable_model_and_metrics(tmp_path):
    run = tmp_path / "run"
    main(
        [
            "train",
            "--data",
            str(CELLS),
            "--arch",
            "efficientnet_lite0",
            "--weights",
            "none",
            "--epochs",
            "1",
            "--head-epochs",
            "1",
            "--limit-per-class",
            "3",
            "--batch-size",
            "6",
            "--unfreeze-from",
            "block7a",
            "--out",
            str(run),
            "--verbose",
            "0",
        ]
    )
    for name in ("model.keras", "train.log", "history.json", "split.json", "train_config.json", "curve_loss.png"):
        assert (run / name).exists(), name
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["phase_boundaries"] == [1]
    split = json.loads((run / "split.json").read_text())
    assert not set(split["val_groups"]) & set(split["train_groups"])

    import keras

    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert model.output_shape == (None, 4)
    assert model.get_layer("top_activation") is not None
    assert not any(layer.name == "augment" for layer in model.layers)  # served graph has no augmentation

    ev = tmp_path / "eval"
    main(
        ["evaluate", "--model", str(run / "model.keras"), "--data", str(CELLS), "--out", str(ev), "--threshold", "0.5"]
    )
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "per_class", "confusion_matrix", "unidentified"):
        assert key in metrics
    assert metrics["n"] == sum(1 for _ in CELLS.glob("*/*.jpeg"))
    assert np.array(metrics["confusion_matrix"]["rows_true_cols_pred"]).sum() == metrics["n"]
    assert (ev / "confusion_matrix.png").stat().st_size > 1000


def test_tiny_multilab_run_trains_six_outputs_and_saves_validation_logits(tmp_path):
    """Both labs' fixture cells -> cell caches -> train-cells (one epoch each phase) -> the
    served graph has the five classes + OTHER on 224x224 cell crops; validation logits saved."""
    from training.card_cells import fixture_cells
    from training.labs import LABELS, Item, build_cell_cache

    items = []
    for i, (label, path) in enumerate(fixture_cells()):
        lab = "pbc" if path.suffix == ".jpg" else "bccd"
        items.append(Item(str(path), path.name, LABELS.index(label), path.parent.name, lab, path.name,
                          "val" if i % 4 == 0 else "train"))
    cache = build_cell_cache(items, tmp_path / "cells.npz", workers=1)
    run = tmp_path / "run"
    main(["train-cells", "--cache", str(cache), "--out", str(run), "--weights", "none", "--epochs", "1",
          "--head-epochs", "1", "--batch-size", "8", "--unfreeze-from", "block7a", "--verbose", "0"])
    import keras

    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert model.output_shape == (None, len(LABELS)) and model.input_shape == (None, 224, 224, 3)
    assert not any(layer.name.startswith("augment") for layer in model.layers)
    with np.load(run / "val_logits.npz") as z:
        assert z["logits"].shape == (sum(i.split == "val" for i in items), len(LABELS))
    config = json.loads((run / "train_config.json").read_text())
    assert config["method"] == "cell-crop-224" and config["labs"] == ["bccd", "pbc"]
