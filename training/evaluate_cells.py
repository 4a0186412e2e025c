"""Evaluation of multi-lab cell models: logits on cell caches, calibration fitted on validation,
and the figures the model card reports (per lab, per class, open set, lab x lab).

Every figure here is computed from logits, so the expensive part (running the model over a
cache) happens once per model and cache (:func:`cache_logits`), and the rest is numpy.

Conventions
-----------
* Probabilities are the softmax over all of :data:`training.labs.LABELS` (five classes and
  ``OTHER``) at the fitted temperature. The suggested class is the most probable of the five;
  the cell is flagged "unidentified" when that class's probability is below the threshold
  (so ``OTHER`` winning, or two classes sharing the mass, both flag it).
* Balanced accuracy is the mean recall over the classes present in the test set. For the
  leave-one-lab-out figures on the four classes both labs share, the argmax is taken over
  those four (a model trained on BCCD has never seen a basophil).
* Validation figures weight every lab the same and every cell once (``cell_weights``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.labs import FIVE, LABELS, OTHER, CellCache, cell_weights, read_cell_caches

FOUR = FIVE[:4]
N_FIVE = len(FIVE)


def load_cell_model(path: str | Path):
    """A ``.keras`` model, or a ``.weights16.npz`` saved by ``train-cells --save-weights-only``."""
    import keras

    from classifier.preprocessing import CELL_INPUT_SHAPE
    from training.model import build_classifier

    path = Path(path)
    if path.suffix == ".keras":
        return keras.saving.load_model(str(path), compile=False)
    model = build_classifier(weights="none", classes=LABELS, input_shape=CELL_INPUT_SHAPE)
    with np.load(path) as z:
        model.set_weights([z[f"arr_{i}"].astype(np.float32) for i in range(len(z.files))])
    return model


def cache_logits(model, cache: CellCache, batch_size: int = 64) -> np.ndarray:
    from training.train_cells import predict_logits

    return predict_logits(model, cache.images, batch_size)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def weighted_nll(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)[np.arange(len(labels)), labels]
    return float(-(weights * np.log(np.clip(p, 1e-12, None))).sum() / weights.sum())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Temperature minimising the cell-weighted validation NLL (grid on log T, then refined)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    losses = [weighted_nll(logits, labels, weights, t) for t in grid]
    return float(grid[int(np.argmin(losses))])


def suggest(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the most probable of the five classes, its probability)."""
    five = probs[:, :N_FIVE]
    k = five.argmax(axis=1)
    return k, five[np.arange(len(k)), k]


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, labs: np.ndarray, weights: np.ndarray, *, max_flagged: float = 0.15
) -> tuple[float, dict]:
    """The "unidentified" threshold on validation.

    The lowest threshold at which every lab's unflagged five-class cells are >= 97 % right,
    capped so that no lab has more than ``max_flagged`` of its five-class cells flagged;
    figures weighted by cell. Returns (threshold, per-lab figures at it)."""
    k, conf = suggest(probs)
    five = labels < N_FIVE
    candidates = np.round(np.arange(0.20, 0.96, 0.01), 2)

    def at(t: float) -> dict:
        out = {}
        for lab in np.unique(labs):
            m = (labs == lab) & five
            w = weights[m]
            flagged = conf[m] < t
            right = k[m] == labels[m]
            kept = ~flagged
            out[str(lab)] = {
                "flagged": float((w * flagged).sum() / w.sum()),
                "unflagged_accuracy": float((w * (right & kept)).sum() / max((w * kept).sum(), 1e-12)),
            }
        return out

    cap = candidates[0]
    for t in candidates:
        if all(v["flagged"] <= max_flagged for v in at(t).values()):
            cap = t
    chosen = cap
    for t in candidates:
        if all(v["unflagged_accuracy"] >= 0.97 for v in at(t).values()):
            chosen = min(t, cap)
            break
    rule = (
        f"lowest threshold with unflagged five-class validation cells >= 97 % right in every lab, "
        f"capped so that at most {max_flagged:.0%} of any lab's five-class validation cells are flagged"
    )
    return float(chosen), {"rule": rule, "per_lab": at(float(chosen))}


def calibrate(val_logits: np.ndarray, labels: np.ndarray, labs: np.ndarray, groups: np.ndarray) -> dict:
    """Temperature and threshold on the validation cells, weighted by cell."""
    w = cell_weights(labs=labs, labels=labels, groups=groups)
    temperature = fit_temperature(val_logits, labels, w)
    probs = softmax(val_logits, temperature)
    threshold, at = choose_threshold(probs, labels, labs, w)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": at["rule"],
        "validation": at["per_lab"],
        "nll_t1": weighted_nll(val_logits, labels, w, 1.0),
        "nll": weighted_nll(val_logits, labels, w, temperature),
    }


def class_metrics(labels: np.ndarray, preds: np.ndarray, classes: tuple[str, ...]) -> dict:
    n = len(classes)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, preds), 1)
    support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=precision + recall > 0)
    present = support > 0
    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "recall": {c: float(recall[i]) for i, c in enumerate(classes) if present[i]},
        "confusion": {"classes": list(classes), "matrix": cm.tolist()},
    }


def split_metrics(
    logits: np.ndarray, labels: np.ndarray, kinds: np.ndarray, *, temperature: float, threshold: float
) -> dict:
    """Everything the card reports for one test set."""
    probs = softmax(logits, temperature)
    k, conf = suggest(probs)
    five = labels < N_FIVE
    flagged = conf < threshold
    present_five = tuple(c for i, c in enumerate(FIVE) if (labels == i).any())
    out: dict = {"five": class_metrics(labels[five], k[five], FIVE)}
    out["five"]["classes_present"] = list(present_five)
    four = np.isin(labels, range(4))
    k4 = probs[:, :4].argmax(axis=1)
    out["four"] = class_metrics(labels[four], k4[four], FOUR)
    kept = five & ~flagged
    out["open_set"] = {
        "five_class_cells": int(five.sum()),
        "five_class_flagged": float(flagged[five].mean()) if five.any() else 0.0,
        "unflagged_accuracy": float((k[kept] == labels[kept]).mean()) if kept.any() else 0.0,
        "errors_caught": float(flagged[five & (k != labels)].mean()) if (five & (k != labels)).any() else 0.0,
    }
    other = labels == LABELS.index(OTHER)
    if other.any():
        out["open_set"]["other_cells"] = int(other.sum())
        out["open_set"]["other_flagged"] = float(flagged[other].mean())
        out["open_set"]["other_flagged_by_kind"] = {
            str(kind): float(flagged[other & (kinds == kind)].mean()) for kind in np.unique(kinds[other])
        }
    # expected calibration error of the suggested class on five-class cells
    if five.any():
        c, r = conf[five], (k == labels)[five]
        edges = np.linspace(0, 1, 16)
        ece = sum(
            ((c > lo) & (c <= hi)).mean() * abs(r[(c > lo) & (c <= hi)].mean() - c[(c > lo) & (c <= hi)].mean())
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
            if ((c > lo) & (c <= hi)).any()
        )
        out["open_set"]["ece"] = float(ece)
    return out


TEST_SETS = {
    "BCCD TEST": ("bccd_test.npz", "TEST"),
    "BCCD TEST_SIMPLE": ("bccd_test.npz", "TEST_SIMPLE"),
    "PBC test": ("pbc_test.npz", "test"),
}


def evaluate_models(models: dict[str, Path], cache_dir: Path, out: Path) -> dict:
    """Logits of every model on validation and the three test sets (saved in ``out``), then
    calibration on validation and the figures per test set."""
    import keras

    out.mkdir(parents=True, exist_ok=True)
    val_cache = read_cell_caches([cache_dir / "bccd_train.npz", cache_dir / "pbc_trainval.npz"])
    val_cache = val_cache.subset(val_cache.splits == "val")
    tests = {}
    for name, (file, split) in TEST_SETS.items():
        c = read_cell_caches([cache_dir / file])
        tests[name] = c.subset(c.splits == split)
    results = {}
    for model_name, path in models.items():
        keras.backend.clear_session()
        logits_file = out / f"{model_name}.logits.npz"
        if logits_file.exists():
            with np.load(logits_file) as z:
                logits = {k: z[k] for k in z.files}
        else:
            model = load_cell_model(path)
            logits = {"val": cache_logits(model, val_cache)}
            for name, cache in tests.items():
                logits[name] = cache_logits(model, cache)
            np.savez(logits_file, **logits)
        config = json.loads((path.parent / path.name.split(".")[0] / "train_config.json").read_text())
        trained_on = config["labs"]
        vmask = np.isin(val_cache.labs, trained_on)
        cal = calibrate(logits["val"][vmask], val_cache.labels[vmask], val_cache.labs[vmask], val_cache.groups[vmask])
        results[model_name] = {
            "trained_on": trained_on,
            "augment": config["augment"],
            "calibration": cal,
            "tests": {
                name: split_metrics(
                    logits[name], cache.labels, cache.kinds, temperature=cal["temperature"], threshold=cal["threshold"]
                )
                for name, cache in tests.items()
            },
            "train_config": config,
        }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
