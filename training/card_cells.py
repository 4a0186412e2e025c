"""Model card of a multi-lab cell model (``python -m training card-cells``).

Reads ``results.json`` from :func:`training.evaluate_cells.evaluate_models` (every candidate
and every leave-one-lab-out run, calibrated on validation), picks the served model among the
candidates trained on both labs by the project's rule (lowest temperature-calibrated
validation NLL; the test splits are never looked at for this), installs it as
``classifier/models/NAME.keras`` and writes ``NAME.json`` (read by serving and the registry)
and ``NAME.md`` (for people).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from classifier.inference import sha256_of
from classifier.preprocessing import CELL_CROP, CELL_SIZE
from training.labs import LABELS

DATASETS = [
    {
        "name": "Blood Cell Images (BCCD lab)",
        "use": "training (TRAIN, validation held out by original), test (TEST, TEST_SIMPLE)",
        "citation": "Blood Cell Images, Kaggle dataset derived from the BCCD dataset, Copyright (c) 2017 shenggan",
        "licence": "MIT",
    },
    {
        "name": "PBC (Hospital Clinic of Barcelona, CellaVision DM96)",
        "use": "training, validation and test by file, fixed split training/groups/pbc_split.csv (seed 2026)",
        "citation": "Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J. A dataset of microscopic "
        "peripheral blood cell images for development of automatic recognition systems. Data in Brief 30, "
        "105474 (2020)",
        "licence": "CC BY 4.0",
    },
]
TEST_COLUMNS = ("BCCD TEST", "BCCD TEST_SIMPLE", "PBC test")
ROW_NAMES = {("bccd",): "BCCD", ("pbc",): "PBC", ("bccd", "pbc"): "both"}


def lab_table_figures(result: dict, test: str) -> dict:
    """Balanced accuracy and macro-F1 over the classes the training data had: a model trained
    on BCCD alone (no basophils, no "other") is scored with its argmax over the four."""
    m = result["tests"][test]["four" if tuple(result["trained_on"]) == ("bccd",) else "five"]
    return {"balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"], "accuracy": m["accuracy"]}


def select(results: dict) -> str:
    both = [n for n, r in results.items() if tuple(r["trained_on"]) == ("bccd", "pbc") and r["augment"] == "robust"]
    return min(both, key=lambda n: results[n]["calibration"]["nll"])


def make_cell_card(
    *, results_paths: list[Path], runs_dirs: list[Path], name: str, dest: Path, supersedes: str | None
) -> dict:
    results: dict = {}
    for path in results_paths:
        results.update(json.loads(path.read_text()))
    chosen = select(results)
    r = results[chosen]
    dest.mkdir(parents=True, exist_ok=True)
    model_file = dest / f"{name}.keras"
    source = next(d / f"{chosen}.keras" for d in runs_dirs if (d / f"{chosen}.keras").exists())
    shutil.copyfile(source, model_file)
    cfg = r["train_config"]
    lab_rows = []
    for n, res in results.items():
        lab_rows.append(
            {
                "run": n,
                "trained_on": ROW_NAMES[tuple(res["trained_on"])],
                "augment": res["augment"],
                **{t: lab_table_figures(res, t) for t in TEST_COLUMNS},
            }
        )
    card = {
        "name": name,
        "file": model_file.name,
        "sha256": sha256_of(model_file),
        "size_bytes": model_file.stat().st_size,
        "classes": list(LABELS),
        "input_method": CELL_CROP,
        "supersedes": supersedes,
        "architecture": {
            "backbone": "EfficientNet-Lite0 (ImageNet weights ported by `python -m training convert`)",
            "head": f"global average pooling, dropout {cfg['dropout']}, dense {len(LABELS)} (logits)",
            "output": "logits over the five classes and OTHER; serving applies softmax(logits / temperature), "
            "suggests the most probable of the five and flags the cell when that probability is below the threshold",
            "gradcam_layer": "top_activation",
        },
        "input": {
            "method": CELL_CROP,
            "width": CELL_SIZE,
            "height": CELL_SIZE,
            "preprocessing": "classifier.preprocessing.prepare (cell-crop-224): nucleus found by red-minus-blue "
            "optical density against the slide background, square crop 2x the nucleus extent, white balance to the "
            "background, bilinear resize to 224x224; no nucleus: the whole image padded square",
        },
        "calibration": {
            "temperature": r["calibration"]["temperature"],
            "threshold": r["calibration"]["threshold"],
            "threshold_rule": r["calibration"]["threshold_rule"],
            "fitted_on": "validation cells of both labs, every lab x class weighted the same and every cell once "
            "(BCCD augmented copies of one original share one weight)",
            "validation_per_lab": r["calibration"]["validation"],
            "val_nll_before": r["calibration"]["nll_t1"],
            "val_nll_after": r["calibration"]["nll"],
        },
        "selection": {
            "rule": "among the runs trained on both labs with the robust augmentation, the lowest "
            "temperature-calibrated validation NLL (test splits never consulted)",
            "candidates": {
                n: {"val_nll": res["calibration"]["nll"], "best_epoch": res["train_config"]["best_epoch"]}
                for n, res in results.items()
                if tuple(res["trained_on"]) == ("bccd", "pbc")
            },
            "selected_run": chosen,
        },
        "metrics": {t: r["tests"][t] for t in TEST_COLUMNS},
        "lab_by_lab": lab_rows,
        "datasets": DATASETS,
        "training": {k: v for k, v in cfg.items() if k not in ("cache", "out", "command")},
        "known_failure_modes": [
            "BCCD monocytes (16 training originals, 4 test originals) are the weakest class; monocyte vs "
            "neutrophil/eosinophil confusions dominate the BCCD errors.",
            "The nucleus finder picks the most stained, most central nucleus: with two white cells in one image it "
            "classifies one of them; with none it classifies the whole image and the prediction says so.",
            "OTHER was learnt from PBC's immature granulocytes, erythroblasts and platelets only; blasts, smudge "
            "cells and atypical lymphocytes are not in any training set: rely on the threshold and the reviewer.",
            "Two labs are not every lab: validate locally (the agreement dashboard) before relying on it.",
        ],
        "intended_use": "Decision support for reviewing single white-blood-cell images; not a diagnostic device. "
        "Every prediction must be confirmed by a qualified reviewer.",
    }
    (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    card["metrics"]["fixture_cells"] = fixture_metrics(model_file, dest / f"{name}.json")
    (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    (dest / f"{name}.md").write_text(render_markdown(card))
    return card


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def fixture_cells() -> list[tuple[str, Path]]:
    """The committed real cells (BCCD and PBC) with their label (OTHER for PBC's non-white cells)."""
    from training.labs import PBC_FOLDERS

    cells = [(p.parent.name, p) for p in sorted((FIXTURES / "cells").glob("*/*.jpeg"))]
    cells += [(PBC_FOLDERS[p.parent.name], p) for p in sorted((FIXTURES / "pbc").glob("*/*.jpg"))]
    return cells


def fixture_metrics(model_file: Path, card_file: Path) -> dict:
    """The installed file through the serving code on the committed cells (the tests re-check it)."""
    from PIL import Image

    from classifier.inference import Classifier

    clf = Classifier(model_file, card_file)
    cells = fixture_cells()
    preds = clf.predict(images=[Image.open(p) for _, p in cells], with_heatmap=False)
    five = [(label, pred) for (label, _), pred in zip(cells, preds, strict=True) if label in LABELS[:5]]
    other = [pred for (label, _), pred in zip(cells, preds, strict=True) if label not in LABELS[:5]]
    return {
        "n": len(five),
        "accuracy": sum(pred.label == label for label, pred in five) / len(five),
        "flagged": sum(pred.unidentified for _, pred in five) / len(five),
        "other_n": len(other),
        "other_flagged": sum(pred.unidentified for pred in other) / max(len(other), 1),
    }


def targets(card: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the targets of the multi-lab issue."""
    m = card["metrics"]
    test, simple, pbc = m["BCCD TEST"], m["BCCD TEST_SIMPLE"], m["PBC test"]
    rows = {r["run"]: r for r in card["lab_by_lab"]}
    lolo_bccd = max(
        (r for r in rows.values() if r["trained_on"] == "BCCD"), key=lambda r: r["PBC test"]["balanced_accuracy"]
    )
    lolo_pbc = max(
        (r for r in rows.values() if r["trained_on"] == "PBC"), key=lambda r: r["BCCD TEST"]["balanced_accuracy"]
    )
    flagged = max(x["open_set"]["five_class_flagged"] for x in (test, pbc))
    unflagged = min(x["open_set"]["unflagged_accuracy"] for x in (test, pbc))
    return [
        ("BCCD TEST accuracy >= 0.92", _pct(test["five"]["accuracy"]), test["five"]["accuracy"] >= 0.92),
        ("BCCD TEST macro-F1 >= 0.92", f"{test['five']['macro_f1']:.3f}", test["five"]["macro_f1"] >= 0.92),
        ("BCCD TEST_SIMPLE accuracy >= 0.95", _pct(simple["five"]["accuracy"]), simple["five"]["accuracy"] >= 0.95),
        (
            "PBC test balanced accuracy (five classes) >= 0.97",
            _pct(pbc["five"]["balanced_accuracy"]),
            pbc["five"]["balanced_accuracy"] >= 0.97,
        ),
        (
            "trained on BCCD only, PBC test balanced accuracy >= 0.75",
            f"{_pct(lolo_bccd['PBC test']['balanced_accuracy'])} ({lolo_bccd['run']}, four classes)",
            lolo_bccd["PBC test"]["balanced_accuracy"] >= 0.75,
        ),
        (
            "trained on PBC only, BCCD TEST balanced accuracy >= 0.75",
            f"{_pct(lolo_pbc['BCCD TEST']['balanced_accuracy'])} ({lolo_pbc['run']})",
            lolo_pbc["BCCD TEST"]["balanced_accuracy"] >= 0.75,
        ),
        (
            "PBC ig/erythroblast/platelet test cells flagged >= 80 %",
            _pct(pbc["open_set"]["other_flagged"]),
            pbc["open_set"]["other_flagged"] >= 0.8,
        ),
        ("five-class test cells flagged <= 15 % in each lab", _pct(flagged), flagged <= 0.15),
        ("unflagged test cells >= 97 % right in each lab", _pct(unflagged), unflagged >= 0.97),
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_markdown(card: dict) -> str:
    m = card["metrics"]
    cal = card["calibration"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"EfficientNet-Lite0 fine-tuned on two labs' white cells (BCCD and PBC) to the five-part differential "
        f'plus OTHER ("none of these"). Input: `{card["input_method"]}` (the white cell found and cropped by '
        "its nucleus, scale-normalised, white-balanced). File `" + card["file"] + f"`, sha256 `{card['sha256']}`.",
        "",
        "## Results on held-out cells",
        "",
        "| test set | cells | accuracy | balanced accuracy | macro-F1 | flagged | unflagged right |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in TEST_COLUMNS:
        f, o = m[t]["five"], m[t]["open_set"]
        lines.append(
            f"| {t} | {f['n']} | {_pct(f['accuracy'])} | {_pct(f['balanced_accuracy'])} | {f['macro_f1']:.3f} "
            f"| {_pct(o['five_class_flagged'])} | {_pct(o['unflagged_accuracy'])} |"
        )
    lines += ["", "Recall per class:", "", "| test set | " + " | ".join(LABELS[:5]) + " |", "|---" * 6 + "|"]
    for t in TEST_COLUMNS:
        rec = m[t]["five"]["recall"]
        lines.append(f"| {t} | " + " | ".join(_pct(rec[c]) if c in rec else "—" for c in LABELS[:5]) + " |")
    o = m["PBC test"]["open_set"]
    lines += [
        "",
        '## "None of these" (open set)',
        "",
        f"PBC test cells that are none of the five: {_pct(o['other_flagged'])} of {o['other_cells']} flagged "
        "unidentified (" + ", ".join(f"{k} {_pct(v)}" for k, v in o["other_flagged_by_kind"].items()) + "). "
        "Five-class cells flagged: "
        + ", ".join(f"{t} {_pct(m[t]['open_set']['five_class_flagged'])}" for t in TEST_COLUMNS)
        + ".",
        "",
        "## Calibration",
        "",
        f"Temperature {cal['temperature']:.3f}, threshold {cal['threshold']:.2f}: {cal['threshold_rule']}. Fitted on "
        f"{cal['fitted_on']}. On validation: "
        + "; ".join(
            f"{lab}: {_pct(v['flagged'])} flagged, unflagged {_pct(v['unflagged_accuracy'])} right"
            for lab, v in cal["validation_per_lab"].items()
        )
        + ".",
        "",
        "## Lab x lab (leave one lab out)",
        "",
        "Balanced accuracy / macro-F1. Rows trained on BCCD alone are scored over the four classes BCCD has "
        "(argmax over those four); the others over the five.",
        "",
        "| run | trained on | augmentation | " + " | ".join(TEST_COLUMNS) + " |",
        "|---|---|---|---|---|---|",
    ]
    for row in card["lab_by_lab"]:
        cells = " | ".join(f"{_pct(row[t]['balanced_accuracy'])} / {row[t]['macro_f1']:.3f}" for t in TEST_COLUMNS)
        lines.append(f"| {row['run']} | {row['trained_on']} | {row['augment']} | {cells} |")
    if card.get("export"):
        e = card["export"]
        lines += [
            "",
            "## Serving",
            "",
            f"Workers classify through the exported graph `{e['file']}` ({e['runtime']}), sha256 `{e['sha256']}`, "
            f"made from this `.keras` file (sha256 `{e['source_sha256'][:16]}…`) by `classifier.export`; the Keras "
            "model computes the Grad-CAM heatmaps. `tests/classifier/test_inference.py` checks that both give the "
            "same classes and probabilities within 1e-4 on the committed cells.",
        ]
    lines += ["", "## Targets (multi-lab issue)", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in targets(card)]
    sel = card["selection"]
    lines += [
        "",
        "## Selection",
        "",
        f"{sel['rule']}: "
        + ", ".join(f"{n} {v['val_nll']:.3f}" for n, v in sel["candidates"].items())
        + f"; selected `{sel['selected_run']}`.",
        "",
        "## Training",
        "",
        "Keras {keras} on {backend} ({device}), {n_train} training cells, {n_val} validation cells, augmentation "
        "`{augment}`, unfreeze from `{unfreeze_from}`, lr {lr}, label smoothing {label_smoothing}, best epoch "
        "{best_epoch}, {wall_s:.0f} s.".format(**card["training"]),
        "",
        "## Data",
        "",
    ]
    for d in card["datasets"]:
        lines.append(f"- **{d['name']}** ({d['licence']}): {d['citation']}. Used for {d['use']}.")
    lines += ["", "## Known failure modes", ""]
    lines += [f"- {x}" for x in card["known_failure_modes"]]
    lines += ["", "## Intended use", "", card["intended_use"], ""]
    return "\n".join(lines)
