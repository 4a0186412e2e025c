"""Data listing, grouped validation split, the tf.data pipeline and the pre-decoded cache.

Grouping key
------------
Validation must hold out whole *originals* (every augmentation of one microscope image on
the same side). dataset2-master's file names ``_<n>_<id>`` do not say which original a
file came from (files sharing ``n`` show different cells), so the original is recovered
from the pixels by ``training.sources`` and read from a CSV (``--groups``; the one for
dataset2 TRAIN is committed as ``training/groups/dataset2_train_sources.csv``).
Files the CSV marks ``unmatched`` are left out of training and validation. Without a CSV
every file is its own group (a plain stratified split) and training logs a warning.
"""

from __future__ import annotations

import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.preprocessing import CLASSES, INPUT_SHAPE, load_and_prepare
from training.sources import UNMATCHED, read_sources

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DATASET2_TRAIN_SOURCES = Path(__file__).resolve().parent / "groups" / "dataset2_train_sources.csv"


@dataclass
class Split:
    paths: list[str]
    labels: np.ndarray  # int class indices
    groups: list[str]


def original_of(path: str | Path, cls: str, sources: dict[str, str] | None) -> str | None:
    """The recovered original of file ``path`` of class ``cls`` (``sources`` is keyed
    ``CLASS/name``), or None when unknown or unmatched."""
    source = (sources or {}).get(f"{cls}/{Path(path).name}")
    return None if source in (None, UNMATCHED) else source


def group_key(path: str | Path, label: int, sources: dict[str, str] | None = None) -> str:
    """``CLASS/<original>`` when ``sources`` knows the file, else ``CLASS/<file stem>``
    (the file is its own group)."""
    cls = CLASSES[label]
    return f"{cls}/{original_of(path, cls, sources) or Path(path).stem}"


def list_images(
    data_dir: str | Path, limit_per_class: int | None = None, sources: dict[str, str] | None = None
) -> Split:
    """Class-per-folder listing in CLASSES order, sorted by name (deterministic).

    With ``sources`` (see :mod:`training.sources`), files whose original could not be
    recovered are dropped, so they can land on neither side of a split."""
    data_dir = Path(data_dir)
    paths: list[str] = []
    labels: list[int] = []
    for idx, cls in enumerate(CLASSES):
        folder = data_dir / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"missing class folder {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if sources is not None:
            files = [f for f in files if original_of(f, cls, sources)]
        if limit_per_class:
            files = _spread_over_groups(files, idx, limit_per_class, sources)
        paths += [str(p) for p in files]
        labels += [idx] * len(files)
    groups = [group_key(p, y, sources) for p, y in zip(paths, labels, strict=True)]
    return Split(paths, np.asarray(labels, np.int64), groups)


def resolve_sources(data_dir: str | Path, groups: str = "auto") -> tuple[dict[str, str] | None, str]:
    """``--groups`` -> (sources mapping or None, description for logs / split.json).

    ``auto`` uses the committed dataset2 TRAIN CSV when it describes ``data_dir`` (it
    knows at least 90 % of the files), ``none`` disables grouping, anything else is a CSV
    path written by ``python -m training sources``."""
    if groups == "none":
        return None, "none: every file is its own group"
    path = DATASET2_TRAIN_SOURCES if groups == "auto" else Path(groups)
    if groups == "auto" and not path.exists():
        return None, "none: every file is its own group"
    sources = read_sources(path)
    if groups == "auto":
        names = [
            f"{c}/{p.name}" for c in CLASSES if (Path(data_dir) / c).is_dir() for p in (Path(data_dir) / c).iterdir()
        ]
        known = sum(n in sources for n in names)
        if not names or known < 0.9 * len(names):
            return None, "none: every file is its own group (the committed sources CSV does not describe this folder)"
    unmatched = sum(v == UNMATCHED for v in sources.values())
    return (
        sources,
        f"original microscope image recovered by training.sources ({path.name}; {unmatched} unmatched files left out)",
    )


def _spread_over_groups(files: list[Path], label: int, limit: int, sources: dict[str, str] | None = None) -> list[Path]:
    """Take ``limit`` files, round-robin over groups so tiny runs still see many originals."""
    by_group: dict[str, list[Path]] = {}
    for f in files:
        by_group.setdefault(group_key(f, label, sources), []).append(f)
    queues = [by_group[k] for k in sorted(by_group)]
    picked: list[Path] = []
    depth = 0
    while len(picked) < limit and any(len(q) > depth for q in queues):
        for q in queues:
            if len(q) > depth and len(picked) < limit:
                picked.append(q[depth])
        depth += 1
    return sorted(picked)


def grouped_split(data: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out whole groups per class (at least one group per class when a class has >1)."""
    rng = np.random.default_rng(seed)
    val_groups: set[str] = set()
    for idx in range(len(CLASSES)):
        groups = sorted({g for g, y in zip(data.groups, data.labels, strict=True) if y == idx})
        if len(groups) < 2:
            continue
        n_val = min(len(groups) - 1, max(1, math.ceil(val_fraction * len(groups))))
        order = rng.permutation(len(groups))
        val_groups.update(groups[i] for i in order[:n_val])
    is_val = np.array([g in val_groups for g in data.groups], bool)

    def take(mask: np.ndarray) -> Split:
        ids = np.flatnonzero(mask)
        return Split([data.paths[i] for i in ids], data.labels[ids], [data.groups[i] for i in ids])

    return take(~is_val), take(is_val)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    total = counts.sum()
    return {i: float(total / (len(CLASSES) * c)) if c else 0.0 for i, c in enumerate(counts)}


# --------------------------------------------------------------------------- tf.data


def _load_for_tf(path) -> np.ndarray:
    p = path.decode() if isinstance(path, bytes) else str(path)
    return load_and_prepare(p)


def make_tf_dataset(split: Split, batch_size: int, shuffle: bool, seed: int):
    """tf.data pipeline: file -> shared ``load_and_prepare`` (decode, EXIF, RGB, resize)
    -> float32 [0, 255] batches with one-hot labels. Augmentation and the backbone's own
    normalisation are layers of the training model."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    if shuffle:
        ds = ds.shuffle(len(split.paths), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        img = tf.numpy_function(_load_for_tf, [path], tf.uint8)
        img = tf.ensure_shape(img, INPUT_SHAPE)
        return tf.cast(img, tf.float32), tf.one_hot(label, len(CLASSES))

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- cache


def load_prepared_images(paths: list[str], workers: int = 8) -> np.ndarray:
    """Decode + prepare many images with the shared function -> uint8 (N, H, W, 3)."""
    out = np.empty((len(paths), *INPUT_SHAPE), np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        for i, arr in enumerate(pool.map(load_and_prepare, paths)):
            out[i] = arr
    return out


def build_cache(
    data_dir: str | Path,
    out: str | Path,
    quality: int = 85,
    limit_per_class: int | None = None,
    sources: dict[str, str] | None = None,
    group_key_description: str = "none: every file is its own group",
) -> Path:
    """Write a compact, TF-free training cache: every image run through the shared
    ``load_and_prepare`` and re-encoded as WebP (lossy, ``quality``), concatenated into one
    uint8 blob inside an .npz with labels, names and group keys."""
    data = list_images(data_dir, limit_per_class, sources)
    blobs = []
    for path in data.paths:
        buf = io.BytesIO()
        Image.fromarray(load_and_prepare(path)).save(buf, "WEBP", quality=quality, method=4)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        blob=np.concatenate(blobs),
        offsets=offsets,
        labels=data.labels,
        paths=np.array([str(Path(p).relative_to(data_dir)) for p in data.paths]),
        groups=np.array(data.groups),
        meta=np.array(
            json.dumps(
                {
                    "input_shape": list(INPUT_SHAPE),
                    "quality": quality,
                    "classes": list(CLASSES),
                    "group_key": group_key_description,
                }
            )
        ),
    )
    return out


def read_cache(path: str | Path, workers: int = 8) -> tuple[Split, np.ndarray, str]:
    """Load a cache written by :func:`build_cache` -> (Split, uint8 images, group key description)."""
    with np.load(path) as z:
        blob, offsets = z["blob"], z["offsets"]
        labels = z["labels"].astype(np.int64)
        paths = [str(p) for p in z["paths"]]
        groups = [str(g) for g in z["groups"]]
        meta = json.loads(str(z["meta"]))
    if tuple(meta["input_shape"]) != INPUT_SHAPE:
        raise ValueError(f"cache input shape {meta['input_shape']} != {INPUT_SHAPE}")

    def decode(i: int) -> np.ndarray:
        raw = blob[offsets[i] : offsets[i + 1]].tobytes()
        return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.uint8)

    images = np.empty((len(paths), *INPUT_SHAPE), np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        for i, arr in enumerate(pool.map(decode, range(len(paths)))):
            images[i] = arr
    return Split(paths, labels, groups), images, meta.get("group_key", "stored in the cache")
