"""Multi-lab training on cell-crop caches (``python -m training train-cells``).

The same two phases as :mod:`training.train` (head, then the backbone from
``--unfreeze-from``), on one or more caches written by ``python -m training cells``:

* ``--labs`` picks the labs to train on (``bccd``, ``pbc`` or both): the leave-one-lab-out
  runs train on one lab and are tested on the other;
* the outputs are :data:`training.labs.LABELS` (five classes and ``OTHER``);
* training and validation weights count every lab x label the same and every cell once
  (``training.labs.cell_weights``), so validation accuracy is a balanced accuracy over labs;
* ``--augment robust`` adds the stain / camera / focus augmentation (``StainShift``),
  ``--augment basic`` is the earlier geometry + mild colour jitter (the ablation).

Writes ``model.keras`` (or ``weights16.npz`` with ``--save-weights-only``), ``val_logits.npz``
(logits of every validation cell, for calibration), ``train.log``, ``history.json`` and
``train_config.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from training.labs import LABELS, cell_weights, read_cell_caches
from training.model import build_classifier, build_training_model
from training.train import ArrayBatches, _device, add_recipe_arguments, fit_two_phases, log, start_run


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = [
        keras.ops.convert_to_numpy(model(images[i : i + batch_size].astype(np.float32), training=False))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(LABELS)), np.float32)


def train_cells(args) -> Path:
    out, t0, deadline = start_run(args)
    cache = read_cell_caches(args.cache)
    cache = cache.subset(np.isin(cache.labs, args.labs) & np.isin(cache.splits, ["train", "val"]))
    if args.limit:
        keep = np.concatenate(
            [
                np.flatnonzero((cache.labels == k) & (cache.splits == split))[: args.limit]
                for k in range(len(LABELS))
                for split in ("train", "val")
            ]
        )
        cache = cache.subset(np.sort(keep))
    tr, va = cache.subset(cache.splits == "train"), cache.subset(cache.splits == "val")
    log.info(
        "labs %s: train %d cells, validation %d (%.1fs); per label train %s",
        args.labs,
        len(tr),
        len(va),
        time.monotonic() - t0,
        dict(zip(LABELS, np.bincount(tr.labels, minlength=len(LABELS)).tolist(), strict=True)),
    )
    n = len(LABELS)
    tr_w = cell_weights(labs=tr.labs, labels=tr.labels, groups=tr.groups)
    va_w = cell_weights(labs=va.labs, labels=va.labels, groups=va.groups)
    train_ds = ArrayBatches(tr.images, tr.labels, tr_w, args.batch_size, True, args.seed, n_classes=n)
    val_ds = ArrayBatches(va.images, va.labels, va_w, args.batch_size, False, 0, n_classes=n)

    core = build_classifier(
        args.arch, args.weights, dropout=args.dropout, classes=LABELS, input_shape=tr.images.shape[1:]
    )
    model = build_training_model(core, args.seed, robust=args.augment == "robust")
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing)
    keeper, history, epochs2 = fit_two_phases(
        core=core,
        model=model,
        loss=loss,
        train_ds=train_ds,
        val_ds=val_ds,
        steps_per_epoch=len(train_ds),
        args=args,
        deadline=deadline,
        weighted=True,
    )
    keeper.restore()
    history["best_epoch"] = list(keeper.best_epoch) if keeper.best_epoch else None
    history["wall_s"] = time.monotonic() - t0

    np.savez(
        out / "val_logits.npz",
        logits=predict_logits(core, va.images),
        labels=va.labels,
        names=va.names,
        labs=va.labs,
        groups=va.groups,
        kinds=va.kinds,
    )
    if args.save_weights_only:
        np.savez_compressed(out / "weights16.npz", *[w.astype(np.float16) for w in core.get_weights()])
    else:
        core.save(out / "model.keras")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    config = {
        **{k: v for k, v in vars(args).items() if k not in ("func",)},
        "classes": list(LABELS),
        "method": cache.method,
        "input_shape": list(tr.images.shape[1:]),
        "backend": keras.backend.backend(),
        "device": _device(),
        "keras": keras.__version__,
        "n_train": len(tr),
        "n_val": len(va),
        "phase2_epochs_planned": epochs2,
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": history["best_epoch"],
        "wall_s": history["wall_s"],
    }
    (out / "train_config.json").write_text(json.dumps(config, indent=1))
    log.info("saved %s (%.1fs total)", out, time.monotonic() - t0)
    return out


def add_arguments(p) -> None:
    p.add_argument("--cache", nargs="+", required=True, help="cell caches from `python -m training cells`")
    p.add_argument("--labs", nargs="+", default=["bccd", "pbc"], choices=("bccd", "pbc"))
    p.add_argument("--augment", default="robust", choices=("robust", "basic"))
    p.add_argument("--out", required=True)
    add_recipe_arguments(
        p, epochs=20, head_epochs=2, batch_size=64, lr=3e-4, unfreeze_from="stem_", label_smoothing=0.1, patience=6
    )
    p.add_argument("--monitor", default="val_accuracy", choices=("val_accuracy", "val_loss"))
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--limit", type=int, default=None, help="at most this many cells per label (smoke runs)")
    p.add_argument("--time-budget-s", type=float, default=None)
    p.add_argument("--finetune-cost", type=float, default=1.8)
    p.add_argument("--save-weights-only", action="store_true", help="float16 weights instead of model.keras")
    p.add_argument("--verbose", type=int, default=2)
