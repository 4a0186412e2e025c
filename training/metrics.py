"""Numpy-only metrics, temperature scaling and the "unidentified" threshold."""

from __future__ import annotations

import numpy as np

from classifier.preprocessing import CLASSES


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))))


TEMPERATURE_BOUNDS = (float(np.exp(-3.0)), float(np.exp(3.0)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising validation NLL (golden-section search on log T in [-3, 3])."""
    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = support > 0
    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "nll": float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)))),
        "ece": expected_calibration_error(probs, labels),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(CLASSES)
        },
        "confusion_matrix": {"labels": list(CLASSES), "rows_true_cols_pred": cm.tolist()},
    }


def threshold_stats(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    flagged = conf < threshold
    kept = ~flagged
    return {
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "flagged_fraction": float(flagged.mean()),
        "errors": int(wrong.sum()),
        "errors_caught": int((wrong & flagged).sum()),
        "errors_missed": int((wrong & kept).sum()),
        "correct_flagged": int((~wrong & flagged).sum()),
        "accuracy_on_kept": float((~wrong[kept]).mean()) if kept.any() else None,
    }


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, target_accuracy: float = 0.99, max_flagged: float = 0.2, floor: float = 0.5
) -> tuple[float, str]:
    """Smallest confidence threshold whose accepted validation cells reach ``target_accuracy``,
    flagging at most ``max_flagged`` of the cells; never below ``floor``. Returns the
    threshold and a sentence saying which rule decided it."""
    conf = np.sort(np.unique(probs.max(axis=1)))
    correct = probs.argmax(axis=1) == labels
    allc = probs.max(axis=1)
    candidates = np.concatenate([[0.0], conf])
    best = None
    for t in candidates:
        kept = allc >= t
        if kept.mean() < 1.0 - max_flagged:
            break
        if kept.any() and correct[kept].mean() >= target_accuracy:
            best = float(t)
            break
    if best is None:
        # target unreachable within the flag budget: flag exactly the budget's worth
        best = float(np.quantile(allc, max_flagged))
        rule = (
            f"validation accuracy {target_accuracy:.0%} unreachable while flagging <= {max_flagged:.0%}; "
            f"flags the least-confident {max_flagged:.0%}"
        )
    else:
        rule = (
            f"smallest threshold giving >= {target_accuracy:.0%} accuracy on accepted validation cells "
            f"(flag budget {max_flagged:.0%})"
        )
    if best < floor:
        best = floor
        rule += f"; raised to the floor {floor} (below it a cell is never more likely right than wrong)"
    return best, rule


def per_original_accuracy(probs: np.ndarray, labels: np.ndarray, groups: list[str | None]) -> dict:
    """Accuracy counted per original cell instead of per augmented copy: an original is right
    when the mean probability over its copies picks its class. Files without a group
    (``None``) are skipped. TEST weights originals by their number of copies (a monocyte
    original has ~150, a neutrophil ~13); this view weights every cell once."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is not None:
            by_group.setdefault(g, []).append(i)
    per_class = {c: [0, 0] for c in CLASSES}
    correct = 0
    for ids in by_group.values():
        label = int(labels[ids[0]])
        right = int(probs[ids].mean(axis=0).argmax()) == label
        correct += right
        per_class[CLASSES[label]][0] += right
        per_class[CLASSES[label]][1] += 1
    n = len(by_group)
    return {
        "originals": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "files_counted": sum(len(v) for v in by_group.values()),
        "per_class_correct_of": per_class,
    }
