"""Multi-lab cell data: the labels, each lab's fixed splits and the cell-crop cache.

Labs
----
* ``bccd``: the Kaggle "Blood Cell Images" crops (BCCD lab). TRAIN files are grouped by the
  original microscope image recovered by :mod:`training.sources`; validation holds out whole
  originals (``val_fraction``, fixed seed). TEST and TEST_SIMPLE are test sets only.
* ``pbc``: PBC, Barcelona (CellaVision DM96). Split by file, stratified per folder, with a
  fixed seed into train / val / test, written to ``training/groups/pbc_split.csv`` (committed,
  so every run and every later session uses the same test cells).

Labels
------
The model's outputs are :data:`LABELS`: the five white-cell classes and ``OTHER`` (a cell that
is none of the five: PBC's immature granulocytes, erythroblasts and platelets). A lab that has
no example of a class simply contributes none.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.preprocessing import CELL_CROP, input_shape, load_image, prepare
from training.sources import UNMATCHED, read_sources

FIVE = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL")
OTHER = "OTHER"
LABELS = (*FIVE, OTHER)
PBC_FOLDERS = {
    "eosinophil": "EOSINOPHIL",
    "lymphocyte": "LYMPHOCYTE",
    "monocyte": "MONOCYTE",
    "neutrophil": "NEUTROPHIL",
    "basophil": "BASOPHIL",
    "ig": OTHER,
    "erythroblast": OTHER,
    "platelet": OTHER,
}
GROUPS_DIR = Path(__file__).resolve().parent / "groups"
PBC_SPLIT = GROUPS_DIR / "pbc_split.csv"
BCCD_TRAIN_SOURCES = GROUPS_DIR / "dataset2_train_sources.csv"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    path: str  # absolute path of the image
    name: str  # stable name: lab/folder/file
    label: int  # index into LABELS
    kind: str  # finer kind: the folder (e.g. "ig", "NEUTROPHIL")
    lab: str
    group: str  # the unit validation holds out: original image (bccd) or the file (pbc)
    split: str  # train / val / test / TEST / TEST_SIMPLE


def write_pbc_split(pbc_dir: str | Path, out: str | Path = PBC_SPLIT, seed: int = 2026) -> Path:
    """Fixed stratified split of PBC by file: 60 % train, 15 % validation, 25 % test."""
    rng = np.random.default_rng(seed)
    rows = []
    for folder in sorted(PBC_FOLDERS):
        files = sorted(p.name for p in (Path(pbc_dir) / folder).glob("*.jpg") if not p.name.startswith("."))
        order = rng.permutation(len(files))
        n_test, n_val = round(0.25 * len(files)), round(0.15 * len(files))
        for rank, i in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            rows.append((f"{folder}/{files[i]}", split))
    out = Path(out)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "split"])
        w.writerows(sorted(rows))
    return out


def read_pbc_split(path: str | Path = PBC_SPLIT) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["file"]: row["split"] for row in csv.DictReader(f)}


def pbc_items(pbc_dir: str | Path, split_csv: str | Path = PBC_SPLIT) -> list[Item]:
    pbc_dir = Path(pbc_dir)
    split = read_pbc_split(split_csv)
    items = []
    for rel, s in sorted(split.items()):
        folder = rel.split("/")[0]
        items.append(
            Item(str(pbc_dir / rel), f"pbc/{rel}", LABELS.index(PBC_FOLDERS[folder]), folder, "pbc", f"pbc/{rel}", s)
        )
    return items


def bccd_train_items(
    train_dir: str | Path, *, copies_per_original: int | None, val_fraction: float = 0.15, seed: int = 1337
) -> list[Item]:
    """BCCD TRAIN files whose original is known, at most ``copies_per_original`` of each
    original (evenly spread over the sorted files), split into train / val by original."""
    sources = read_sources(BCCD_TRAIN_SOURCES)
    by_original: dict[tuple[str, str], list[str]] = {}
    for key, source in sorted(sources.items()):
        if source == UNMATCHED:
            continue
        cls = key.split("/")[0]
        by_original.setdefault((cls, source), []).append(key)
    rng = np.random.default_rng(seed)
    val: set[tuple[str, str]] = set()
    for cls in FIVE:
        originals = sorted(k for k in by_original if k[0] == cls)
        if len(originals) > 1:
            n_val = max(1, round(val_fraction * len(originals)))
            val.update(originals[i] for i in rng.permutation(len(originals))[:n_val])
    items = []
    for (cls, source), keys in sorted(by_original.items()):
        if copies_per_original and len(keys) > copies_per_original:
            keys = [keys[i] for i in np.linspace(0, len(keys) - 1, copies_per_original).round().astype(int)]
        for key in keys:
            items.append(
                Item(
                    str(Path(train_dir) / key),
                    f"bccd/TRAIN/{key}",
                    LABELS.index(cls),
                    cls,
                    "bccd",
                    f"bccd/{source}",
                    "val" if (cls, source) in val else "train",
                )
            )
    return items


def bccd_test_items(images_dir: str | Path, split: str) -> list[Item]:
    """BCCD TEST or TEST_SIMPLE (every file; its group is the file)."""
    items = []
    for cls in FIVE[:4]:
        for p in sorted((Path(images_dir) / split / cls).glob("*.jpeg")):
            name = f"bccd/{split}/{cls}/{p.name}"
            items.append(Item(str(p), name, LABELS.index(cls), cls, "bccd", name, split))
    return items


def _encode(args: tuple[str, str, int]) -> tuple[bytes, bool]:
    path, method, quality = args
    prepared = prepare(load_image(path), method=method)
    buf = io.BytesIO()
    Image.fromarray(prepared.array).save(buf, "WEBP", quality=quality, method=4)
    return buf.getvalue(), prepared.cell_found


def build_cell_cache(
    items: list[Item], out: str | Path, *, method: str = CELL_CROP, quality: int = 88, workers: int = 2
) -> Path:
    """Run every item through the shared ``classifier.preprocessing.prepare`` and store the
    model inputs (WebP) with their labels, labs, groups and splits in one .npz."""
    with ProcessPoolExecutor(workers) as pool:
        encoded = list(pool.map(_encode, [(i.path, method, quality) for i in items], chunksize=32))
    blobs = [np.frombuffer(b, np.uint8) for b, _ in encoded]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        blob=np.concatenate(blobs) if blobs else np.zeros(0, np.uint8),
        offsets=np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
        labels=np.array([i.label for i in items], np.int64),
        cell_found=np.array([f for _, f in encoded], bool),
        names=np.array([i.name for i in items]),
        kinds=np.array([i.kind for i in items]),
        labs=np.array([i.lab for i in items]),
        groups=np.array([i.group for i in items]),
        splits=np.array([i.split for i in items]),
        meta=np.array(json.dumps({"method": method, "labels": list(LABELS), "quality": quality})),
    )
    return out


@dataclass
class CellCache:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray
    cell_found: np.ndarray
    names: np.ndarray
    kinds: np.ndarray
    labs: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    method: str

    def subset(self, mask: np.ndarray) -> CellCache:
        fields = ("images", "labels", "cell_found", "names", "kinds", "labs", "groups", "splits")
        return CellCache(**{f: getattr(self, f)[mask] for f in fields}, method=self.method)

    def __len__(self) -> int:
        return len(self.labels)


def _decode(raw: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.uint8)


def read_cell_caches(paths: list[str | Path]) -> CellCache:
    """Load and concatenate caches written by :func:`build_cell_cache` (one method)."""
    parts = []
    for path in paths:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if tuple(meta["labels"]) != LABELS:
                raise ValueError(f"{path}: labels {meta['labels']} != {LABELS}")
            blob, offsets = z["blob"], z["offsets"]
            raws = [blob[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
            with ThreadPoolExecutor(8) as pool:
                decoded = list(pool.map(_decode, raws))
            images = np.stack(decoded) if raws else np.zeros((0, *input_shape(meta["method"])), np.uint8)
            parts.append(
                CellCache(
                    images,
                    z["labels"],
                    z["cell_found"],
                    z["names"],
                    z["kinds"],
                    z["labs"],
                    z["groups"],
                    z["splits"],
                    meta["method"],
                )
            )
    if len({p.method for p in parts}) != 1:
        raise ValueError("caches made with different preprocessing methods")
    cat = {
        f: np.concatenate([getattr(p, f) for p in parts])
        for f in ("images", "labels", "cell_found", "names", "kinds", "labs", "groups", "splits")
    }
    return CellCache(**cat, method=parts[0].method)


def cell_weights(*, labs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-item weight so that every lab x label counts the same in total and, inside it,
    every *cell* (group) counts once, however many augmented copies it has."""
    w = np.zeros(len(labels), np.float64)
    keys = np.char.add(np.char.add(np.asarray(labs).astype(str), "|"), np.asarray(labels).astype(str))
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        members, inverse, counts = np.unique(np.asarray(groups)[idx], return_inverse=True, return_counts=True)
        w[idx] = 1.0 / counts[inverse] / len(members)
    return w / w.mean() if len(w) else w


def build_all_caches(shared: Path, out: Path, *, copies_per_original: int | None = 12) -> list[Path]:
    """The four caches the multi-lab runs use (``shared`` is ``../shared/data``)."""
    images = shared / "bloodcells" / "dataset2-master" / "images"
    pbc = pbc_items(shared / "pbc")
    test = bccd_test_items(images, "TEST") + bccd_test_items(images, "TEST_SIMPLE")
    train = bccd_train_items(images / "TRAIN", copies_per_original=copies_per_original)
    return [
        build_cell_cache(train, out / "bccd_train.npz", quality=88),
        build_cell_cache(test, out / "bccd_test.npz", quality=88),
        build_cell_cache([i for i in pbc if i.split != "test"], out / "pbc_trainval.npz", quality=85),
        build_cell_cache([i for i in pbc if i.split == "test"], out / "pbc_test.npz", quality=85),
    ]
