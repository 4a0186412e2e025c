"""Evaluation, calibration (temperature + threshold) and confusion-matrix plots.

Images are read with the serving code path (``classifier.preprocessing.load_and_prepare``)
so that the numbers describe what the app will do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from classifier.inference import sha256_of
from classifier.preprocessing import CLASSES, INPUT_SHAPE, load_and_prepare
from training.data import list_images, original_of
from training.metrics import (
    choose_threshold,
    classification_metrics,
    fit_temperature,
    nll,
    per_original_accuracy,
    softmax,
    threshold_stats,
)


def load_model(path: str | Path):
    import keras

    return keras.saving.load_model(str(path), compile=False)


def predict_logits(model, paths: list[str], batch_size: int = 32) -> np.ndarray:
    import keras

    out = []
    batch = np.empty((batch_size, *INPUT_SHAPE), np.float32)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        for i, p in enumerate(chunk):
            batch[i] = load_and_prepare(p)
        logits = model.predict_on_batch(batch[: len(chunk)])  # compiled predict step (fast)
        out.append(np.asarray(keras.ops.convert_to_numpy(logits), np.float64))
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)))


def plot_confusion(cm: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), [c.title() for c in CLASSES], rotation=30, ha="right")
    ax.set_yticks(range(len(CLASSES)), [c.title() for c in CLASSES])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{frac[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if frac[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(
    model_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    temperature: float | None = None,
    threshold: float | None = None,
    card_path: str | Path | None = None,
    batch_size: int = 32,
    model=None,
    sources: dict[str, str] | None = None,
) -> dict:
    """Evaluate on a class-per-folder directory; writes metrics.json, confusion_matrix.png
    and predictions.csv to ``out_dir``. Temperature/threshold default to the card's.
    With ``sources`` (``training.sources`` CSV of this folder) also per-original accuracy."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if card_path:
        card = json.loads(Path(card_path).read_text())
        temperature = card["calibration"]["temperature"] if temperature is None else temperature
        threshold = card["calibration"]["threshold"] if threshold is None else threshold
    temperature = 1.0 if temperature is None else float(temperature)
    data = list_images(data_dir)
    model = model if model is not None else load_model(model_path)
    logits = predict_logits(model, data.paths, batch_size)
    probs = softmax(logits, temperature)
    result = {
        "model": str(model_path),
        "model_sha256": sha256_of(model_path),
        "data": str(data_dir),
        "temperature": temperature,
        **classification_metrics(probs, data.labels),
        "ece_uncalibrated": classification_metrics(softmax(logits, 1.0), data.labels)["ece"],
    }
    if threshold is not None:
        result["unidentified"] = threshold_stats(probs, data.labels, threshold)
    if sources:
        result["per_original"] = per_original_accuracy(probs, data.labels, _originals(data.paths, sources))
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    plot_confusion(
        np.array(result["confusion_matrix"]["rows_true_cols_pred"]),
        out / "confusion_matrix.png",
        f"{Path(data_dir).name}: acc {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}",
    )
    with open(out / "predictions.csv", "w") as f:
        f.write("path,true,pred,confidence," + ",".join(f"p_{c}" for c in CLASSES) + "\n")
        for p, y, pr in zip(data.paths, data.labels, probs, strict=True):
            f.write(
                f"{p},{CLASSES[y]},{CLASSES[int(pr.argmax())]},{pr.max():.5f},"
                + ",".join(f"{v:.5f}" for v in pr)
                + "\n"
            )
    return result


def _originals(paths: list[str], sources: dict[str, str]) -> list[str | None]:
    """The recovered original of each ``.../CLASS/name`` path, None when unknown/unmatched."""
    out = []
    for p in paths:
        cls = Path(p).parent.name
        src = original_of(p, cls, sources)
        out.append(f"{cls}/{src}" if src else None)
    return out


def _resolve(paths: list[str], data_dir: str | Path | None) -> list[str]:
    resolved = []
    for p in paths:
        if not Path(p).is_absolute() and data_dir is not None:
            cand = Path(data_dir) / p
            if cand.exists() or not Path(p).exists():
                p = str(cand)
        resolved.append(p)
    return resolved


def calibrate(
    model_path: str | Path,
    split_path: str | Path,
    data_dir: str | Path | None,
    out_dir: str | Path,
    target_accuracy: float = 0.99,
    max_flagged: float = 0.2,
    model=None,
    sources: dict[str, str] | None = None,
) -> dict:
    """Fit the temperature and the "unidentified" threshold on the held-out validation
    groups recorded in ``split.json`` (never on TEST). Writes calibration.json."""
    split = json.loads(Path(split_path).read_text())
    paths = _resolve(split["val_paths"], data_dir)
    labels = np.array([CLASSES.index(Path(p).parent.name) for p in paths])
    model = model if model is not None else load_model(model_path)
    logits = predict_logits(model, paths)
    temperature = fit_temperature(logits, labels)
    probs = softmax(logits, temperature)
    threshold, rule = choose_threshold(probs, labels, target_accuracy, max_flagged)
    result = {
        "fitted_on": f"validation split: {len(paths)} images, {len(split['val_groups'])} groups held out of TRAIN",
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": rule,
        "val_nll_before": nll(logits, labels, 1.0),
        "val_nll_after": nll(logits, labels, temperature),
        "validation_metrics": classification_metrics(probs, labels),
        "validation_threshold_stats": threshold_stats(probs, labels, threshold),
    }
    if sources:
        result["validation_per_original"] = per_original_accuracy(probs, labels, _originals(paths, sources))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=1))
    return result
