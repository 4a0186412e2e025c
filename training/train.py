"""Two-phase transfer-learning run.

Phase 1: backbone frozen, train the head (dropout + dense) at ``--head-lr``.
Phase 2: unfreeze the backbone from ``--unfreeze-from`` (default ``block4a``) to the top
(BatchNorm stays frozen) and fine-tune at ``--lr`` with cosine decay.
Both phases: class-weighted cross-entropy, validation on whole held-out groups,
early stopping on ``--monitor`` (validation accuracy by default) with the best weights restored, optional wall-clock
budget. Writes ``model.keras`` (served graph, no augmentation layers), ``train.log``,
``history.json``, ``history_phase*.csv``, ``split.json``, ``train_config.json`` and the
training-curve PNGs.

Two input paths, same model: ``--data DIR`` streams files through tf.data calling the
shared ``classifier.preprocessing`` function; ``--cache FILE`` reads a pre-decoded cache
(``python -m training cache``) and needs no TensorFlow (e.g. KERAS_BACKEND=torch on a GPU box).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import keras
import numpy as np

from classifier.preprocessing import CLASSES, INPUT_SHAPE
from training.data import (
    Split,
    class_weights,
    grouped_split,
    list_images,
    make_tf_dataset,
    read_cache,
    resolve_sources,
)
from training.model import build_classifier, build_training_model, set_backbone_trainable

log = logging.getLogger("training")


class ArrayBatches(keras.utils.PyDataset):
    """uint8 image array -> (float32 batch, one-hot, sample weight) for the cache paths."""

    def __init__(self, images, labels, weights, batch_size, shuffle, seed, n_classes: int | None = None):
        super().__init__(workers=4, use_multiprocessing=False)
        self.images, self.labels, self.weights = images, labels, weights
        self.n_classes = n_classes or len(CLASSES)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(labels))
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, i):
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        x = self.images[idx].astype(np.float32)
        y = np.eye(self.n_classes, dtype=np.float32)[self.labels[idx]]
        return x, y, self.weights[idx].astype(np.float32)

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(len(self.labels))


class BestKeeper(keras.callbacks.Callback):
    """Early stopping on a validation metric (``val_accuracy``: higher is better, or
    ``val_loss``: lower is better) that remembers the best *served* weights across phases,
    and stops when the wall-clock budget would be exceeded by another epoch."""

    def __init__(self, core, patience, deadline, monitor="val_accuracy"):
        super().__init__()
        self.core, self.patience, self.deadline = core, patience, deadline
        self.monitor = monitor
        self.sign = -1.0 if monitor == "val_accuracy" else 1.0  # minimise sign * value
        self.best = math.inf
        self.best_weights = None
        self.best_epoch = None
        self.phase = 0
        self.wait = 0
        self.epoch_start = time.monotonic()
        self.last_epoch_s = 0.0
        self.out_of_time = False

    def start_phase(self, phase):
        self.phase, self.wait = phase, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = self.sign * logs.get(self.monitor, -self.sign * math.inf)
        took = time.monotonic() - self.epoch_start
        self.last_epoch_s = took
        log.info(
            "phase %d epoch %d: %s (%.1fs)",
            self.phase,
            epoch + 1,
            " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if isinstance(v, float)),
            took,
        )
        if current < self.best:
            self.best, self.best_epoch, self.wait = current, (self.phase, epoch + 1), 0
            self.best_weights = [w.copy() for w in self.core.get_weights()]
        else:
            self.wait += 1
            if self.wait >= self.patience:
                log.info("early stopping: no %s improvement for %d epochs", self.monitor, self.patience)
                self.model.stop_training = True
        if self.deadline and time.monotonic() + took * 1.15 > self.deadline:
            log.info("stopping: wall-clock budget reached")
            self.out_of_time = True
            self.model.stop_training = True

    def restore(self):
        if self.best_weights is not None:
            self.core.set_weights(self.best_weights)
            log.info(
                "restored best weights from phase/epoch %s (%s %.4f)",
                self.best_epoch,
                self.monitor,
                self.sign * self.best,
            )


def fit_two_phases(
    *, core, model, loss, train_ds, val_ds, steps_per_epoch: int, args, deadline, weighted: bool = False, callbacks=None
):
    """Phase 1 (head only, ``args.head_lr``), then phase 2 (backbone from ``args.unfreeze_from``,
    cosine decay from ``args.lr``, planned to fit the wall-clock ``deadline``), early stopping on
    ``args.monitor`` across both. ``weighted``: accuracy counts the sample weights (validation
    weighted by cell). Returns (keeper, history, phase-2 epochs planned)."""
    keeper = BestKeeper(core, args.patience, deadline, args.monitor)
    history: dict[str, list] = {"phase_boundaries": []}
    accuracy = [keras.metrics.CategoricalAccuracy(name="accuracy")]

    def run_phase(phase: int, epochs: int, lr, unfreeze_from):
        n_trainable = set_backbone_trainable(core, unfreeze_from)
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=args.weight_decay),
            loss=loss,
            **({"weighted_metrics": accuracy} if weighted else {"metrics": accuracy}),
            jit_compile=False,
        )
        log.info(
            "phase %d: %d epochs, %d trainable layers, unfreeze_from=%s", phase, epochs, n_trainable, unfreeze_from
        )
        keeper.start_phase(phase)
        h = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=[keeper, *(callbacks(phase) if callbacks else [])],
            verbose=args.verbose,
        )
        for k, v in h.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)
        history["phase_boundaries"].append(len(history.get("loss", [])))

    run_phase(1, args.head_epochs, args.head_lr, None)
    epochs2 = args.epochs
    if deadline and keeper.last_epoch_s > 0:
        # fine-tuning epochs cost more (backward through the backbone): plan the cosine
        # schedule for the epochs that fit the remaining budget
        fit = int((deadline - time.monotonic()) / (keeper.last_epoch_s * args.finetune_cost))
        if fit < epochs2:
            log.info("time budget: phase 2 planned for %d epochs instead of %d", max(fit, 0), epochs2)
            epochs2 = max(fit, 0)
    if epochs2 > 0 and not keeper.out_of_time:
        lr = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=max(1, epochs2 * steps_per_epoch), alpha=0.05)
        run_phase(2, epochs2, lr, args.unfreeze_from)
    return keeper, history, epochs2


def _device() -> str:
    """What trained the model, for the card: the GPU's name or the CPU core count."""
    import os

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU {gpus[0].name}"
    return f"CPU, {os.cpu_count()} cores"


def _setup_logging(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    fh = logging.FileHandler(out / "train.log", mode="w")
    fh.setFormatter(fmt)
    sh = logging.StreamHandler()
    sh.setFormatter(fmt)
    log.addHandler(fh)
    log.addHandler(sh)
    log.propagate = False


def _subset(split: Split, ids: np.ndarray) -> Split:
    return Split([split.paths[i] for i in ids], split.labels[ids], [split.groups[i] for i in ids])


def _load_data(args):
    """-> (all Split, images or None, group key description)."""
    if args.cache:
        data, images, how = read_cache(args.cache)
        if args.limit_per_class:
            keep = np.concatenate(
                [np.flatnonzero(data.labels == c)[: args.limit_per_class] for c in range(len(CLASSES))]
            )
            data, images = _subset(data, keep), images[keep]
        return data, images, how
    if not args.data:
        raise SystemExit("give --data DIR or --cache FILE")
    sources, how = resolve_sources(args.data, args.groups)
    if sources is None:
        log.warning("no original-image grouping for %s: validation may share originals with training", args.data)
    return list_images(args.data, args.limit_per_class, sources), None, how


def plot_history(history: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the GPU box may lack matplotlib; curves can be redrawn from history.json
        return []
    written = []
    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = np.arange(1, len(history.get(metric, [])) + 1)
        if not len(epochs):
            plt.close(fig)
            continue
        ax.plot(epochs, history[metric], label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
        for b in history.get("phase_boundaries", []):
            ax.axvline(b + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch (dotted line: start of fine-tuning)")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"curve_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def start_run(args) -> tuple[Path, float, float | None]:
    """Output folder with its log, seeds, and the clock: (out, start, deadline or None)."""
    out = Path(args.out)
    _setup_logging(out)
    keras.utils.set_random_seed(args.seed)
    t0 = time.monotonic()
    log.info("backend=%s keras=%s args=%s", keras.backend.backend(), keras.__version__, vars(args))
    return out, t0, (t0 + args.time_budget_s if args.time_budget_s else None)


def train(args) -> Path:
    out, t0, deadline = start_run(args)

    data, images, group_how = _load_data(args)
    log.info("group key: %s", group_how)
    train_split, val_split = grouped_split(data, args.val_fraction, args.seed)
    log.info(
        "train %d images / %d groups, validation %d images / %d groups (%.1fs)",
        len(train_split.paths),
        len(set(train_split.groups)),
        len(val_split.paths),
        len(set(val_split.groups)),
        time.monotonic() - t0,
    )
    (out / "split.json").write_text(
        json.dumps(
            {
                "seed": args.seed,
                "val_fraction": args.val_fraction,
                "group_key": group_how,
                "val_groups": sorted(set(val_split.groups)),
                "train_groups": sorted(set(train_split.groups)),
                "val_paths": val_split.paths,
                "n_train": len(train_split.paths),
                "n_val": len(val_split.paths),
            },
            indent=1,
        )
    )
    cw = class_weights(train_split.labels)
    log.info("class weights %s", {CLASSES[k]: round(v, 3) for k, v in cw.items()})

    if images is not None:
        idx = {p: i for i, p in enumerate(data.paths)}
        tr_ids = np.array([idx[p] for p in train_split.paths])
        va_ids = np.array([idx[p] for p in val_split.paths])
        sw = np.array([cw[int(y)] for y in train_split.labels], np.float32)
        train_ds = ArrayBatches(images[tr_ids], train_split.labels, sw, args.batch_size, True, args.seed)
        val_ds = ArrayBatches(
            images[va_ids], val_split.labels, np.ones(len(va_ids), np.float32), args.batch_size, False, 0
        )
    else:
        import tensorflow as tf

        cw_vec = tf.constant([cw[i] for i in range(len(CLASSES))], tf.float32)
        train_ds = make_tf_dataset(train_split, args.batch_size, True, args.seed).map(
            lambda x, y: (x, y, tf.gather(cw_vec, tf.argmax(y, -1)))
        )
        val_ds = make_tf_dataset(val_split, args.batch_size, False, args.seed)

    core = build_classifier(args.arch, args.weights, dropout=args.dropout)
    model = build_training_model(core, args.seed)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing)
    steps_per_epoch = len(train_ds) if images is not None else int(train_ds.cardinality())
    keeper, history, epochs2 = fit_two_phases(
        core=core,
        model=model,
        loss=loss,
        train_ds=train_ds,
        val_ds=val_ds,
        steps_per_epoch=steps_per_epoch,
        args=args,
        deadline=deadline,
        callbacks=lambda phase: [keras.callbacks.CSVLogger(str(out / f"history_phase{phase}.csv"))],
    )
    keeper.restore()
    history["phase_boundaries"] = history["phase_boundaries"][:-1]
    history["best_epoch"] = list(keeper.best_epoch) if keeper.best_epoch else None
    history["monitor"] = args.monitor
    history["best_monitored"] = keeper.sign * keeper.best if keeper.best_weights is not None else None
    history["wall_s"] = time.monotonic() - t0

    model_path = out / "model.keras"
    core.save(model_path)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    config = {
        "arch": args.arch,
        "weights": args.weights,
        "input_shape": list(INPUT_SHAPE),
        "classes": list(CLASSES),
        "seed": args.seed,
        "batch_size": args.batch_size,
        "head_epochs": args.head_epochs,
        "head_lr": args.head_lr,
        "epochs": args.epochs,
        "lr": args.lr,
        "lr_schedule": "cosine decay to 5% over phase 2",
        "optimizer": f"AdamW(weight_decay={args.weight_decay})",
        "unfreeze_from": args.unfreeze_from,
        "dropout": args.dropout,
        "label_smoothing": args.label_smoothing,
        "patience": args.patience,
        "monitor": args.monitor,
        "val_fraction": args.val_fraction,
        "class_weights": {CLASSES[k]: v for k, v in cw.items()},
        "backend": keras.backend.backend(),
        "device": _device(),
        "keras": keras.__version__,
        "data": str(args.cache or args.data),
        "limit_per_class": args.limit_per_class,
        "phase2_epochs_planned": epochs2,
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": history["best_epoch"],
        "wall_s": history["wall_s"],
    }
    (out / "train_config.json").write_text(json.dumps(config, indent=1))
    plot_history(history, out)
    log.info("saved %s (%.1fs total)", model_path, time.monotonic() - t0)
    return model_path


def add_recipe_arguments(
    p, *, epochs: int, head_epochs: int, batch_size: int, lr: float, unfreeze_from: str, label_smoothing: float,
    patience: int,
) -> None:
    """The two-phase recipe's options (:func:`fit_two_phases`), shared by ``train`` and ``train-cells``."""
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", choices=("imagenet", "none"))
    p.add_argument("--epochs", type=int, default=epochs, help="fine-tuning epochs (phase 2)")
    p.add_argument("--head-epochs", type=int, default=head_epochs, help="frozen-backbone epochs (phase 1)")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--unfreeze-from", default=unfreeze_from)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--label-smoothing", type=float, default=label_smoothing)
    p.add_argument("--patience", type=int, default=patience)


def add_arguments(p) -> None:
    p.add_argument("--data", help="class-per-folder training folder (tf.data path)")
    p.add_argument("--cache", help="pre-decoded cache .npz from `python -m training cache` (no TensorFlow needed)")
    add_recipe_arguments(
        p, epochs=15, head_epochs=3, batch_size=32, lr=2e-4, unfreeze_from="block4a", label_smoothing=0.0, patience=4
    )
    p.add_argument("--out", required=True)
    p.add_argument("--limit-per-class", type=int, default=None)
    p.add_argument(
        "--monitor",
        default="val_accuracy",
        choices=("val_accuracy", "val_loss"),
        help="early stopping / best-weights metric. val_loss is dominated by a few confidently wrong held-out "
        "originals (it preferred the head-only model in a run where val accuracy rose from 52%% to 72%%)",
    )
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument(
        "--groups",
        default="auto",
        help="validation grouping: a sources CSV from `python -m training sources`, 'none', or 'auto' "
        "(the committed dataset2 TRAIN CSV when it describes --data)",
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--time-budget-s", type=float, default=None, help="stop (keeping the best weights) before this many seconds"
    )
    p.add_argument(
        "--finetune-cost", type=float, default=1.6, help="phase-2 epoch time / phase-1 epoch time, for budgeting"
    )
    p.add_argument("--verbose", type=int, default=1, help="Keras progress bars: 1 bar, 2 one line per epoch")
