"""Fit the active model to one lab from that lab's own confirmed cells (issue 16).

This is the library behind the candidate-training task, the comparison page and
``bench/bench_adaptation.py``. It has no Django import: the caller reads the confirmed cells,
the lab's floor and the active model from the database and hands plain values in.

Public API (what the Celery task calls, in this order)
------------------------------------------------------
::

    short = check_floor(counts, floor=lab.floor)           # counts: {"MONOCYTE": 41, ...}
    if short: refuse, showing str(s) for s in short         # "MONOCYTE: 41 confirmed, 9 more needed"
    fit, held = split_by_sample(cells, holdout_fraction=0.2, seed=seed)
    result = train_candidate(
        base_model=Path(active.keras), base_card=active_card (dict, the JSON beside it),
        train_cells=fit, holdout_cells=held, replay=Replay.load(active.replay.npz) or None,
        name="wbc-lite0-v3-lab7-1", out_dir=Path(media/models/...), progress=callback,
        time_budget_s=15 * 60, seed=seed, cache=None or a dict the task keeps per active model,
    )
    # -> result.model_path (.keras) and result.card_path (.json): register an inactive ModelVersion;
    #    result.comparison.to_dict(): the comparison page (also stored in the card, "adaptation").
    # CandidateFailed(reason) -> the version is "failed" with that reason.

* :class:`LabeledCell` ``(image, label, group, name)``: ``image`` is a path, bytes, a PIL image,
  or an array already made by ``classifier.preprocessing.prepare`` (the training caches);
  ``label`` is one of the card's classes (``OTHER`` for a confirmed "none of these");
  ``group`` is the *sample* the cell belongs to (held out as a whole); ``name`` is a stable,
  unique id (the cell's primary key): it keys ``cache`` and names the disagreeing cells.
* ``progress(Progress)`` is called while activations are computed (``stage="activations"``,
  ``done``/``total`` cells) and after every epoch (``stage="training"``, ``epoch``/``epochs``,
  ``loss``, ``elapsed_s``, ``eta_s``), then once for ``"calibrating"`` and ``"saving"``. Raising
  from the callback aborts the run (the exception propagates: a cancel button).
* ``time_budget_s``: when preparing the activations used it all up, :class:`CandidateFailed`;
  when training runs out, it stops after the last epoch that fits (the cosine schedule is not
  re-planned) and the card says so (``adaptation.stopped_by_time_budget``).
* :func:`compare` works on any two models' calibrated probabilities (the page can re-run it on
  new held-out cells); :func:`cell_logits` gives a model's logits on cells.
* :func:`build_replay` / :func:`build_replay_from_caches` make the replay file (see below).

How a candidate is trained (and why)
------------------------------------
Same preprocessing as serving (``prepare(img, method=card["input_method"])``), same model
graph, same loss as ``training/`` (cross-entropy with label smoothing 0.1, AdamW, cosine
decay, BatchNorm frozen). What is fitted is the top of the network: the last MBConv block
(``block7a``), the 1x1 head convolution and the classifier (``train_from="block7a"``), on top of
the active model's frozen layers up to ``block6d_add`` (:data:`CUT`). The frozen part holds
~85 % of a forward pass's multiply-adds, so it runs once per cell and view (``views`` augmented copies
through the recipe's ``RandomAffineCell`` + ``StainShift``, plus the plain image) and training
then costs only the top block's forward and backward on 7x7x192 activations. Everything the
candidate changes is above the cut, so the active model's activations stay valid for it: that
is what makes the replay set and ``cache`` possible. (Fine-tuning deeper would need the images
of the base training data at training time and a full backward pass per cell and epoch.)

Temperature and the "unidentified" threshold are refitted for the candidate on the held-out
samples, with the rule of ``training.evaluate_cells.calibrate`` (lowest threshold with held-out
cells >= 97 % right, capped at 15 % flagged; each class weighted the same). The figures the
comparison shows for the candidate are *cross-fitted*: the held-out samples are split in two by
sample, each half is scored with a temperature and threshold fitted on the other half, so its
flagged fraction and unflagged accuracy are not measured on the cells that chose the threshold.
The active model is scored with its own card's calibration.

Replay ("mixed with the base training data")
--------------------------------------------
The app cannot count on having the raw training sets, and a candidate must not forget the
classes or labs a lab does not send (a lab with few basophils, OTHER). The replay set is
therefore a small file beside the model: the active model's own activations at :data:`CUT`
for ``per_class`` base-training cells per class (spread over the labs and over distinct
originals), quantised to uint8 per channel. Activations, not images: they are the exact input
the fitted part sees, they cost nothing to use at training time, and they hold no viewable
patient image. ~9.4 kB a cell: 50 per class x 6 classes is ~2.6 MB. A replay file is tied to
its model (``model_sha256``); ``train_candidate`` refuses one made from another model. The
replayed cells weigh ``replay_weight`` (default 0.5) of the lab's cells in total, each class
the same inside each part.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classifier.preprocessing import input_shape, load_image, prepare
from training.evaluate_cells import (
    N_FIVE,
    choose_threshold,
    class_metrics,
    fit_temperature,
    softmax,
    weighted_nll,
)
from training.labs import OTHER

CUT = "block6d_add"  # the frozen part ends here; everything above it can be fitted
TRAIN_FROM = "block7a"  # first layer fitted by default ("logits": the classifier only)
ImageSource = str | Path | bytes | np.ndarray | object


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class LabeledCell:
    """One doctor-confirmed cell of a signed sample."""

    image: ImageSource  # path, bytes, PIL image, or a prepared uint8 model input (H, W, 3)
    label: str  # one of the card's classes
    group: str  # the sample it belongs to: samples are held out whole
    name: str  # stable unique id (cell primary key): cache key, disagreement list


@dataclass(frozen=True)
class Shortfall:
    label: str
    have: int
    floor: int

    @property
    def more_needed(self) -> int:
        return self.floor - self.have

    def __str__(self) -> str:
        return f"{self.label}: {self.have} confirmed, {self.more_needed} more needed (floor {self.floor})"


@dataclass(frozen=True)
class Progress:
    stage: str  # "activations" | "training" | "calibrating" | "saving"
    elapsed_s: float
    done: int = 0  # activations: cells done
    total: int = 0  # activations: cells in all
    epoch: int = 0  # training: epochs finished
    epochs: int = 0  # training: epochs planned
    loss: float | None = None  # training: mean training loss of the last epoch
    eta_s: float | None = None  # estimated seconds left (training and after)


class CandidateFailed(Exception):
    """The candidate could not be trained; ``reason`` is what the page shows."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class AdaptConfig:
    """The recipe of a candidate; the defaults are what the benchmark measured."""

    train_from: str = TRAIN_FROM
    views: int = 2  # augmented copies per training cell (plus the plain cell)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    replay_weight: float = 0.5


# --------------------------------------------------------------------------- floor and split


def check_floor(counts: dict[str, int], *, floor: int, classes: Sequence[str] | None = None) -> list[Shortfall]:
    """The classes with fewer than ``floor`` confirmed cells (empty list: the run may start).
    ``classes`` defaults to the five cell classes; a class missing from ``counts`` has 0."""
    from training.labs import FIVE

    classes = FIVE if classes is None else classes
    return [Shortfall(c, int(counts.get(c, 0)), floor) for c in classes if int(counts.get(c, 0)) < floor]


def split_by_sample(
    cells: Sequence[LabeledCell], *, holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[list[LabeledCell], list[LabeledCell]]:
    """(training cells, held-out cells): whole samples (``group``) go to one side. Samples are
    taken in a seeded random order and held out while any label they have is short of
    ``holdout_fraction`` of that label's cells in the held-out part; at least one sample is held
    out and at least one kept."""
    groups = sorted({c.group for c in cells})
    if len(groups) < 2:
        raise CandidateFailed(f"{len(groups)} sample(s): at least two signed samples are needed to hold one out")
    members: dict[str, list[str]] = {}
    for c in cells:
        members.setdefault(c.group, []).append(c.label)
    labels = [c.label for c in cells]
    want = {lab: holdout_fraction * labels.count(lab) for lab in set(labels)}
    have = dict.fromkeys(want, 0)
    held: set[str] = set()
    for i in np.random.default_rng(seed).permutation(len(groups)):
        g = groups[i]
        if len(held) == len(groups) - 1:
            break
        if not held or any(have[lab] < want[lab] for lab in members[g]):
            held.add(g)
            for lab in members[g]:
                have[lab] += 1
    fit = [c for c in cells if c.group not in held]
    out = [c for c in cells if c.group in held]
    return fit, out


# --------------------------------------------------------------------------- model pieces


def _cell_outputs(classes: Sequence[str]) -> np.ndarray:
    """Indices of the cell classes (every output but OTHER), which must come first."""
    idx = np.array([i for i, c in enumerate(classes) if c != OTHER])
    if len(idx) and idx.max() != len(idx) - 1:
        raise CandidateFailed(f"classes {list(classes)}: OTHER must be the last output")
    return idx


def split_model(model, *, cut: str = CUT):
    """(frozen part: image -> activations at ``cut``, fitted part: activations -> logits). The
    fitted part shares its layers with ``model``: training it changes ``model``."""
    import keras

    names = [layer.name for layer in model.layers]
    if cut not in names:
        raise CandidateFailed(f"the model has no layer {cut!r}")
    i = names.index(cut)
    lower = keras.Model(model.inputs, model.layers[i].output, name="frozen_part")
    x = inputs = keras.Input(shape=tuple(model.layers[i].output.shape[1:]), name="activations")
    for j in range(i + 1, len(model.layers)):
        layer = model.layers[j]
        if layer.input is not model.layers[j - 1].output:
            raise CandidateFailed(f"layers above {cut!r} are not a simple chain ({layer.name})")
        x = layer(x)
    return lower, keras.Model(inputs, x, name="fitted_part")


def set_fitted_layers(upper, train_from: str) -> int:
    """Fit every non-BatchNorm layer of ``upper`` from the first whose name starts with
    ``train_from`` upwards; BatchNorm stays frozen (inference statistics), as in ``training/``."""
    from keras import layers

    started, n = False, 0
    for layer in upper.layers:
        started = started or layer.name.startswith(train_from)
        layer.trainable = started and not isinstance(layer, layers.BatchNormalization)
        n += int(layer.trainable and bool(layer.weights))
    if not n:
        raise CandidateFailed(f"no trainable layer from {train_from!r}")
    return n


def prepared_input(cell: LabeledCell, method: str) -> np.ndarray:
    """The model input of one cell, made by the shared preprocessing (unless already made)."""
    if isinstance(cell.image, np.ndarray):
        if cell.image.shape != input_shape(method):
            raise CandidateFailed(f"cell {cell.name}: array of shape {cell.image.shape}, not {input_shape(method)}")
        return cell.image
    return prepare(load_image(cell.image), method=method).array


class Activations:
    """Runs the frozen part once per cell and view; results are kept in ``cache`` (key: the
    cell's name) so that a later run on the same model only computes new cells. A cache must
    belong to one model and one ``views`` setting: key it by the model's sha256."""

    def __init__(self, lower, method: str, *, views: int, seed: int, cache: MutableMapping | None = None):
        import keras
        import tensorflow as tf

        from training.model import build_robust_augmenter

        self.method, self.views = method, views
        self.cache = {} if cache is None else cache
        augmenter = build_robust_augmenter(seed)
        keras.utils.set_random_seed(seed)
        spec = [tf.TensorSpec((None, *input_shape(method)), tf.float32)]

        def plain(x):
            return lower(x, training=False)

        def augmented(x):
            return lower(augmenter(x, training=True), training=False)

        self._plain = tf.function(plain, input_signature=spec, autograph=False)
        self._augmented = tf.function(augmented, input_signature=spec, autograph=False)

    def __call__(
        self,
        cells: Sequence[LabeledCell],
        *,
        augmented: bool,
        on_batch: Callable[[int], None] | None = None,
        batch_size: int = 32,
    ) -> list[np.ndarray]:
        """Per cell a float16 array (views, h, w, c): view 0 plain, then ``views`` augmented
        copies when ``augmented``."""
        need = 1 + (self.views if augmented else 0)
        todo = [c for c in cells if c.name not in self.cache or len(self.cache[c.name]) < need]
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            x = np.stack([prepared_input(c, self.method) for c in part]).astype(np.float32)
            outs = [self._plain(x).numpy()]
            outs += [self._augmented(x).numpy() for _ in range(need - 1)]
            for k, c in enumerate(part):
                self.cache[c.name] = np.stack([o[k] for o in outs]).astype(np.float16)
            if on_batch:
                on_batch(len(part))
        return [self.cache[c.name][:need] for c in cells]


def logits_from_activations(upper, acts: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import tensorflow as tf

    def forward(x):
        return upper(x, training=False)

    fn = tf.function(forward, input_signature=[tf.TensorSpec((None, *acts.shape[1:]), tf.float32)], autograph=False)
    out = [fn(np.asarray(acts[i : i + batch_size], np.float32)).numpy() for i in range(0, len(acts), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, upper.output_shape[-1]))


def cell_logits(*, model, card: dict, cells: Sequence[LabeledCell], cache: MutableMapping | None = None) -> np.ndarray:
    """Logits of ``model`` (a Keras model or a .keras path) on ``cells`` (plain view), through the
    frozen part and the fitted part; ``cache`` as for :class:`Activations`."""
    import keras

    if isinstance(model, str | Path):
        model = keras.saving.load_model(str(model), compile=False)
    lower, upper = split_model(model)
    acts = Activations(lower, card["input_method"], views=0, seed=0, cache=cache)(cells, augmented=False)
    return logits_from_activations(upper, np.stack([a[0] for a in acts]) if acts else np.zeros((0,)))


# --------------------------------------------------------------------------- replay


@dataclass
class Replay:
    """Activations at :data:`CUT` of base-training cells, uint8 per channel (see module doc)."""

    codes: np.ndarray  # uint8 (n, h, w, c)
    low: np.ndarray  # float32 (c,)
    scale: np.ndarray  # float32 (c,)
    labels: np.ndarray  # int (n,), indices into classes
    classes: tuple[str, ...]
    cut: str
    model_sha256: str
    source: str

    def activations(self) -> np.ndarray:
        return (self.codes.astype(np.float32) * self.scale + self.low).astype(np.float16)

    @classmethod
    def from_activations(cls, acts: np.ndarray, labels: np.ndarray, **kw) -> Replay:
        a = np.asarray(acts, np.float32)
        low = a.min(axis=(0, 1, 2))
        scale = np.maximum(a.max(axis=(0, 1, 2)) - low, 1e-6) / 255.0
        codes = np.clip(np.rint((a - low) / scale), 0, 255).astype(np.uint8)
        return cls(codes, low.astype(np.float32), scale.astype(np.float32), np.asarray(labels, np.int64), **kw)

    def save(self, path: str | Path) -> Path:
        np.savez_compressed(
            path,
            codes=self.codes,
            low=self.low,
            scale=self.scale,
            labels=self.labels,
            classes=np.array(self.classes),
            cut=np.array(self.cut),
            model_sha256=np.array(self.model_sha256),
            source=np.array(self.source),
        )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Replay:
        with np.load(path) as z:
            return cls(
                z["codes"],
                z["low"],
                z["scale"],
                z["labels"],
                tuple(str(c) for c in z["classes"]),
                str(z["cut"]),
                str(z["model_sha256"]),
                str(z["source"]),
            )


def pick_replay_cells(
    cells: Sequence[LabeledCell], *, per_class: int, seed: int = 0, labs: Sequence[str] | None = None
) -> list[LabeledCell]:
    """Up to ``per_class`` cells per label, spread evenly over ``labs`` (the lab is the part of
    ``group`` before the first "/") and over distinct groups (originals) first."""
    rng = np.random.default_rng(seed)
    out = []
    for label in sorted({c.label for c in cells}):
        mine = [c for c in cells if c.label == label]
        by_lab: dict[str, list[LabeledCell]] = {}
        for c in mine:
            by_lab.setdefault(c.group.split("/")[0], []).append(c)
        lab_names = [lab for lab in (labs or sorted(by_lab)) if lab in by_lab]
        quota = per_class
        for k, lab in enumerate(lab_names):
            take = min(len(by_lab[lab]), math.ceil(quota / (len(lab_names) - k)))
            pool = [by_lab[lab][i] for i in rng.permutation(len(by_lab[lab]))]
            seen, first, rest = set(), [], []
            for c in pool:
                (rest if c.group in seen else first).append(c)
                seen.add(c.group)
            out += (first + rest)[:take]
            quota -= take
    return out


def build_replay(
    *,
    model,
    card: dict,
    cells: Sequence[LabeledCell],
    per_class: int = 50,
    seed: int = 0,
    model_sha256: str = "",
    source: str = "",
    cache: MutableMapping | None = None,
) -> Replay:
    """Replay set of ``model`` from base-training ``cells`` (see :func:`pick_replay_cells`)."""
    import keras

    if isinstance(model, str | Path):
        from classifier.inference import sha256_of

        model_sha256 = model_sha256 or sha256_of(Path(model))
        model = keras.saving.load_model(str(model), compile=False)
    classes = tuple(card["classes"])
    chosen = pick_replay_cells(cells, per_class=per_class, seed=seed)
    lower, _ = split_model(model)
    acts = Activations(lower, card["input_method"], views=0, seed=seed, cache=cache)(chosen, augmented=False)
    return Replay.from_activations(
        np.stack([a[0] for a in acts]),
        np.array([classes.index(c.label) for c in chosen]),
        classes=classes,
        cut=CUT,
        model_sha256=model_sha256,
        source=source or f"{len(chosen)} base-training cells, up to {per_class} per class",
    )


def cells_from_caches(paths: Sequence[str | Path], *, splits: Sequence[str]) -> list[LabeledCell]:
    """LabeledCells (prepared arrays) from ``training.labs`` cell caches, keeping ``splits``."""
    from training.labs import LABELS, read_cell_caches

    cache = read_cell_caches(list(paths))
    keep = np.flatnonzero(np.isin(cache.splits, list(splits)))
    return [
        LabeledCell(cache.images[i], LABELS[int(cache.labels[i])], str(cache.groups[i]), str(cache.names[i]))
        for i in keep
    ]


def build_replay_from_caches(
    *,
    model_path: Path,
    card_path: Path,
    caches: Sequence[str | Path],
    out: Path,
    per_class: int = 50,
    seed: int = 0,
) -> Path:
    """The replay file of a served model from the training caches it was trained on (their
    "train" split): ``python -c "from training.adapt import *; build_replay_from_caches(...)"``."""
    import json

    card = json.loads(Path(card_path).read_text())
    cells = cells_from_caches(caches, splits=["train"])
    replay = build_replay(
        model=model_path,
        card=card,
        cells=cells,
        per_class=per_class,
        seed=seed,
        source=f"{card['name']} training split of {', '.join(Path(c).name for c in caches)}: "
        f"up to {per_class} cells per class, spread over labs and originals",
    )
    return replay.save(out)


# --------------------------------------------------------------------------- comparison


@dataclass
class ModelFigures:
    recall: dict[str, float]  # per cell class present among the labels
    balanced_accuracy: float  # mean of ``recall``
    accuracy: float
    flagged_fraction: float  # of the cell-class cells
    unflagged_accuracy: float | None  # of the cell-class cells not flagged
    other_flagged: float | None  # of the cells confirmed as OTHER (None: there are none)


@dataclass
class Disagreement:
    name: str
    label: str  # the doctor's
    active: str
    active_confidence: float
    active_flagged: bool
    candidate: str
    candidate_confidence: float
    candidate_flagged: bool


@dataclass
class Comparison:
    n: int
    classes: list[str]
    active: ModelFigures
    candidate: ModelFigures
    disagreements: list[Disagreement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _figures(probs, labels, classes, threshold) -> tuple[ModelFigures, np.ndarray, np.ndarray, np.ndarray]:
    cell_idx = _cell_outputs(classes)
    k = cell_idx[probs[:, cell_idx].argmax(axis=1)]
    conf = probs[np.arange(len(k)), k]
    flagged = conf < np.asarray(threshold, np.float64)
    cellish = np.isin(labels, cell_idx)
    m = class_metrics(labels[cellish], k[cellish], tuple(classes))
    kept = cellish & ~flagged
    other = ~cellish
    figures = ModelFigures(
        recall=m["recall"],
        balanced_accuracy=m["balanced_accuracy"],
        accuracy=m["accuracy"],
        flagged_fraction=float(flagged[cellish].mean()) if cellish.any() else 0.0,
        unflagged_accuracy=float((k[kept] == labels[kept]).mean()) if kept.any() else None,
        other_flagged=float(flagged[other].mean()) if other.any() else None,
    )
    return figures, k, conf, flagged


def compare(
    *,
    labels: Sequence[str],
    classes: Sequence[str],
    active_probs: np.ndarray,
    active_threshold: float | np.ndarray,
    candidate_probs: np.ndarray,
    candidate_threshold: float | np.ndarray,
    names: Sequence[str] | None = None,
) -> Comparison:
    """The active model and a candidate on the same cells (calibrated probabilities over
    ``classes``). As in serving, a model suggests its most probable cell class and flags the
    cell when that probability is below its threshold (a number, or one per cell). Recall and
    balanced accuracy are over the cell classes present; OTHER cells count only as flagged or
    not. A disagreement is a cell whose suggested class differs."""
    classes = list(classes)
    y = np.array([classes.index(label) for label in labels], np.int64)
    names = list(names) if names is not None else [str(i) for i in range(len(y))]
    fa, ka, ca, flag_a = _figures(np.asarray(active_probs, np.float64), y, classes, active_threshold)
    fc, kc, cc, flag_c = _figures(np.asarray(candidate_probs, np.float64), y, classes, candidate_threshold)
    dis = [
        Disagreement(
            names[i], classes[y[i]], classes[ka[i]], float(ca[i]), bool(flag_a[i]),
            classes[kc[i]], float(cc[i]), bool(flag_c[i]),
        )
        for i in np.flatnonzero(ka != kc)
    ]
    return Comparison(len(y), classes, fa, fc, dis)


# --------------------------------------------------------------------------- calibration


def _balanced_weights(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels)
    w = 1.0 / counts[labels]
    return w / w.mean() if len(w) else w


def calibrate_holdout(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Temperature (weighted NLL) and threshold (``choose_threshold``'s rule) on held-out cells."""
    w = _balanced_weights(labels)
    temperature = fit_temperature(logits, labels, w)
    threshold, at = choose_threshold(softmax(logits, temperature), labels, np.full(len(labels), "lab"), w)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": at["rule"],
        "holdout": at["per_lab"].get("lab"),
        "nll_t1": weighted_nll(logits, labels, w, 1.0),
        "nll": weighted_nll(logits, labels, w, temperature),
    }


def crossfit_probs(logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], seed: int = 0):
    """(probabilities, per-cell threshold) where each of two halves of the samples is scored
    with the calibration fitted on the other half; one sample only: fitted on itself."""
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    half = set(uniq[np.random.default_rng(seed).permutation(len(uniq))[: len(uniq) // 2]])
    a = np.array([g in half for g in groups])
    cellish = labels < N_FIVE  # the cells choose_threshold scores
    if len(uniq) < 2 or not (cellish & a).any() or not (cellish & ~a).any():
        cal = calibrate_holdout(logits, labels)
        return softmax(logits, cal["temperature"]), np.full(len(labels), cal["threshold"])
    probs = np.zeros_like(logits, dtype=np.float64)
    thresholds = np.zeros(len(labels))
    for part in (a, ~a):
        cal = calibrate_holdout(logits[~part], labels[~part])
        probs[part] = softmax(logits[part], cal["temperature"])
        thresholds[part] = cal["threshold"]
    return probs, thresholds


# --------------------------------------------------------------------------- training


class _ViewBatches:
    """Batches of (activations, one-hot, weight), one random view per cell per epoch."""

    def __init__(self, acts: list[np.ndarray], labels, weights, n_classes, batch_size, seed):
        import keras

        class _Data(keras.utils.PyDataset):
            def __len__(inner):
                return math.ceil(len(labels) / batch_size)

            def __getitem__(inner, i):
                idx = self.order[i * batch_size : (i + 1) * batch_size]
                x = np.stack([acts[j][self.rng.integers(len(acts[j]))] for j in idx]).astype(np.float32)
                return x, np.eye(n_classes, dtype=np.float32)[labels[idx]], weights[idx].astype(np.float32)

            def on_epoch_end(inner):
                self.order = self.rng.permutation(len(labels))

        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(labels))
        self.data = _Data()


@dataclass
class CandidateResult:
    model: object  # the fitted Keras model (served graph)
    card: dict
    comparison: Comparison  # active vs candidate on the held-out samples
    history: list[dict]  # per epoch: loss, seconds
    wall_s: float
    model_path: Path | None = None
    card_path: Path | None = None
    holdout_logits: np.ndarray | None = None


def _candidate_card(base_card: dict, *, name: str, classes, calibration: dict, adaptation: dict) -> dict:
    keep = ("classes", "input_method", "architecture", "input", "datasets", "known_failure_modes", "intended_use")
    card = {"name": name, **{k: base_card[k] for k in keep if k in base_card}}
    card["classes"] = list(classes)
    card["supersedes"] = base_card.get("name")
    card["calibration"] = {
        **{k: calibration[k] for k in ("temperature", "threshold", "threshold_rule")},
        "fitted_on": "the lab's held-out samples (cells of the candidate's lab only), every class weighted the same",
        "holdout": calibration["holdout"],
        "val_nll_before": calibration["nll_t1"],
        "val_nll_after": calibration["nll"],
    }
    card["adaptation"] = adaptation
    return card


def train_candidate(
    *,
    base_model: Path,
    base_card: dict,
    train_cells: Sequence[LabeledCell],
    holdout_cells: Sequence[LabeledCell],
    replay: Replay | None = None,
    name: str = "candidate",
    out_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    config: AdaptConfig | None = None,
    cache: MutableMapping | None = None,
) -> CandidateResult:
    """Fine-tune ``base_model`` (the active ``.keras``) on the lab's confirmed ``train_cells``
    mixed with ``replay``; calibrate and compare on ``holdout_cells``. With ``out_dir``, writes
    ``NAME.keras`` and ``NAME.json`` (the card, sha256 included) there. See the module doc."""
    import keras

    from classifier.inference import sha256_of

    cfg = config or AdaptConfig()
    t0 = time.monotonic()
    deadline = t0 + time_budget_s if time_budget_s else None
    classes = tuple(base_card["classes"])
    method = base_card["input_method"]
    cell_idx = _cell_outputs(classes)
    unknown = sorted({c.label for c in [*train_cells, *holdout_cells]} - set(classes))
    if unknown:
        raise CandidateFailed(f"labels {unknown} are not outputs of {base_card.get('name')}")
    if not train_cells or not holdout_cells:
        raise CandidateFailed("no training cells or no held-out cells")
    shared = {c.group for c in train_cells} & {c.group for c in holdout_cells}
    if shared:
        raise CandidateFailed(f"samples both trained on and held out: {sorted(shared)[:5]}")
    if not np.isin(np.array([classes.index(c.label) for c in holdout_cells]), cell_idx).any():
        raise CandidateFailed("the held-out samples have no white cell of the five classes")
    base_sha = sha256_of(Path(base_model))
    if replay is not None:
        if replay.model_sha256 and replay.model_sha256 != base_sha:
            raise CandidateFailed("the replay file was made from another model than the active one")
        if tuple(replay.classes) != classes or replay.cut != CUT:
            raise CandidateFailed("the replay file does not match the active model's classes or cut")

    def report(**kw):
        if progress:
            progress(Progress(elapsed_s=time.monotonic() - t0, **kw))

    keras.utils.set_random_seed(seed)
    model = keras.saving.load_model(str(base_model), compile=False)
    lower, upper = split_model(model)
    activations = Activations(lower, method, views=cfg.views, seed=seed, cache=cache)
    total = len(train_cells) + len(holdout_cells)
    done = [0]

    def on_batch(n):
        done[0] += n
        report(stage="activations", done=done[0], total=total)

    report(stage="activations", done=0, total=total)
    held_acts = np.stack([a[0] for a in activations(holdout_cells, augmented=False, on_batch=on_batch)])
    train_acts = activations(train_cells, augmented=True, on_batch=on_batch)
    y_held = np.array([classes.index(c.label) for c in holdout_cells])
    active_logits = logits_from_activations(upper, held_acts)  # before training changes the shared layers

    y_lab = np.array([classes.index(c.label) for c in train_cells])
    w_lab = _balanced_weights(y_lab)
    acts, y, w = list(train_acts), y_lab, w_lab
    if replay is not None and len(replay.labels) and cfg.replay_weight > 0:
        r_acts = replay.activations()
        w_rep = _balanced_weights(replay.labels) * cfg.replay_weight * len(y_lab) / len(replay.labels)
        acts += [r[None] for r in r_acts]
        y = np.concatenate([y_lab, replay.labels])
        w = np.concatenate([w_lab, w_rep])
    w = w / w.mean()

    set_fitted_layers(upper, cfg.train_from)
    batches = _ViewBatches(acts, y, w, len(classes), cfg.batch_size, seed)
    steps = len(batches.data)
    lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps), alpha=0.05)
    upper.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        jit_compile=False,
    )
    history: list[dict] = []
    stopped = {"out_of_time": False}

    class _Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.monotonic()
            if deadline and epoch == 0 and time.monotonic() >= deadline:
                raise CandidateFailed("the time budget was spent before training could start")

        def on_epoch_end(self, epoch, logs=None):
            took = time.monotonic() - self.start
            history.append({"epoch": epoch + 1, "loss": float((logs or {}).get("loss", float("nan"))), "s": took})
            per_epoch = float(np.mean([h["s"] for h in history]))
            report(
                stage="training",
                epoch=epoch + 1,
                epochs=cfg.epochs,
                loss=history[-1]["loss"],
                eta_s=per_epoch * (cfg.epochs - epoch - 1) + 5.0,
            )
            if deadline and epoch + 1 < cfg.epochs and time.monotonic() + per_epoch * 1.15 + 10.0 > deadline:
                stopped["out_of_time"] = True
                self.model.stop_training = True

    upper.fit(batches.data, epochs=cfg.epochs, callbacks=[_Report()], verbose=0)

    report(stage="calibrating", epoch=len(history), epochs=cfg.epochs, eta_s=5.0)
    cand_logits = logits_from_activations(upper, held_acts)
    cal = calibrate_holdout(cand_logits, y_held)
    held_groups = [c.group for c in holdout_cells]
    cand_probs, cand_thresholds = crossfit_probs(cand_logits, y_held, held_groups, seed)
    base_cal = base_card.get("calibration", {})
    comparison = compare(
        labels=[c.label for c in holdout_cells],
        classes=classes,
        active_probs=softmax(active_logits, float(base_cal.get("temperature", 1.0))),
        active_threshold=float(base_cal.get("threshold", 0.0)),
        candidate_probs=cand_probs,
        candidate_threshold=cand_thresholds,
        names=[c.name for c in holdout_cells],
    )

    def count(cells):
        return {k: int(v) for k, v in zip(*np.unique([c.label for c in cells], return_counts=True), strict=True)}

    adaptation = {
        "base": base_card.get("name"),
        "base_sha256": base_sha,
        "recipe": {**asdict(cfg), "cut": CUT},
        "seed": seed,
        "train_cells": count(train_cells),
        "train_samples": len({c.group for c in train_cells}),
        "holdout_cells": count(holdout_cells),
        "holdout_samples": len({c.group for c in holdout_cells}),
        "replay": None if replay is None else {"cells": int(len(replay.labels)), "source": replay.source},
        "epochs_run": len(history),
        "stopped_by_time_budget": stopped["out_of_time"],
        "history": history,
        "comparison_on_holdout": comparison.to_dict(),
        "comparison_note": "candidate's flagged figures cross-fitted (calibration from the other half of the "
        "held-out samples); the active model with its own card's calibration",
    }
    report(stage="saving", epoch=len(history), epochs=cfg.epochs, eta_s=2.0)
    adaptation["wall_s"] = time.monotonic() - t0
    card = _candidate_card(base_card, name=name, classes=classes, calibration=cal, adaptation=adaptation)
    result = CandidateResult(model, card, comparison, history, adaptation["wall_s"], holdout_logits=cand_logits)
    if out_dir is not None:
        import json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.model_path = out_dir / f"{name}.keras"
        model.save(result.model_path)
        card.update(file=result.model_path.name, sha256=sha256_of(result.model_path))
        card["size_bytes"] = result.model_path.stat().st_size
        result.card_path = out_dir / f"{name}.json"
        result.card_path.write_text(json.dumps(card, indent=1) + "\n")
    return result
