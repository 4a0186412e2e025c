"""Recover the BCCD original that every augmented dataset2 image was made from.

Why this exists
---------------
A validation split must hold out whole *originals*: augmentations of one microscope image
on both sides of the split let validation "recognise" cells instead of classifying them.
dataset2-master's file names (``_<n>_<id>.jpeg``) do **not** identify the original: the
files sharing one ``n`` show different cells (a shuffled augmentation generator wrote
them). Grouping by ``(class, n)``, as wbc-lite0-v1 did, left validation at 99.9 %
accuracy against 87 % on TEST.

The originals are in ``dataset-master/JPEGImages`` (640x480; TEST_SIMPLE files are
exactly these images halved) with their class in ``labels.csv``. Every augmented image is
an affine warp (rotation, shear, shift, zoom, flips) plus a contrast stretch of one of
them, so the original is found by geometry:

1. **Candidates.** Embed a 128 px crop centred on the most purple spot (the stained
   nucleus) with the ImageNet EfficientNet-Lite0 backbone; compare with 40 rotated /
   mirrored versions of each same-class original's crop; keep the ``k`` most similar.
2. **Verification.** ORB keypoints on the contrast-normalised grey image are matched
   against each candidate and its mirror image; RANSAC fits a full affine map; the
   candidate with the most inliers wins when it has at least ``min_inliers``.
   Otherwise the image is ``unmatched`` and training leaves it out of both sides.

``python -m training sources`` writes a CSV (file, source, inliers, runner_up); the one
for dataset2 TRAIN is committed in ``training/groups/`` and read by ``train --groups``.
The method's precision is measured on TEST, whose originals are known (TEST_SIMPLE):
see training/README.md.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.preprocessing import CLASSES, load_image

log = logging.getLogger("training.sources")

FRAME = (320, 240)  # dataset2 frame; originals (640x480) are halved to it
CROP = 128  # nucleus crop fed to the embedder
_VARIANT_ANGLES = (0, -12, 12, -24, 24)
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class SourceMatch:
    file: str  # CLASS/name relative to the data directory
    source: str  # original's stem, e.g. BloodImage_00093, or UNMATCHED
    inliers: int  # RANSAC inliers of the winner
    runner_up: int  # best inlier count among the other candidates


def frame_rgb(path: str | Path) -> np.ndarray:
    img = load_image(path)
    if img.size != FRAME:
        img = img.resize(FRAME, Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32)


def stretch(rgb: np.ndarray) -> np.ndarray:
    """Per-channel standardisation: cancels the contrast stretch the augmentations added."""
    mean = rgb.mean(axis=(0, 1))
    std = rgb.std(axis=(0, 1)) + 1e-3
    return np.clip((rgb - mean) / std * 50.0 + 150.0, 0, 255)


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """k x k box sum of a 2-D array (same shape, clipped at the borders)."""
    c = np.cumsum(np.cumsum(np.pad(a, ((1, 0), (1, 0))), 0), 1)
    h, w = a.shape
    r = k // 2
    ys, ye = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    xs, xe = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    return c[ye][:, xe] - c[ys][:, xe] - c[ye][:, xs] + c[ys][:, xs]


def nucleus_centre(rgb: np.ndarray) -> tuple[int, int]:
    """(y, x) of the most blue-over-green 15 px patch: the Wright/Giemsa-stained nucleus."""
    score = _box_mean(rgb[..., 2] - rgb[..., 1], 15)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(y), int(x)


def nucleus_crop(rgb: np.ndarray, size: int = CROP) -> np.ndarray:
    y, x = nucleus_centre(rgb)
    h = size // 2
    y = min(max(y, h), rgb.shape[0] - h)
    x = min(max(x, h), rgb.shape[1] - h)
    return rgb[y - h : y + h, x - h : x + h]


def crop_variants(rgb: np.ndarray) -> np.ndarray:
    """40 rotated / mirrored nucleus crops of an original (the augmentations' orbit)."""
    big = Image.fromarray(stretch(nucleus_crop(rgb, CROP + 32)).astype(np.uint8))
    out = []
    m = 16
    for mirrored in (False, True):
        base = big.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else big
        for angle in _VARIANT_ANGLES:
            for quarter in range(4):
                r = base.rotate(90 * quarter + angle, resample=Image.Resampling.BILINEAR)
                out.append(np.asarray(r, np.float32)[m : m + CROP, m : m + CROP])
    return np.stack(out)


class Embedder:
    """ImageNet EfficientNet-Lite0, pooled features of a CROP x CROP crop, L2-normalised."""

    def __init__(self, weights: Path | None = None):
        from training.convert import load_imagenet_weights
        from training.lite0 import build_backbone

        self.model = build_backbone((CROP, CROP, 3))
        load_imagenet_weights(self.model, weights)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        f = self.model.predict(np.asarray(crops, np.float32), batch_size=64, verbose=0)
        return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)


class Verifier:
    """ORB + RANSAC affine inlier count between two frames (mirror handled by the caller)."""

    def __init__(self, n_features: int = 800):
        import cv2  # opencv-python-headless (requirements-dev.txt): only this command needs it

        self.cv2 = cv2
        self.orb = cv2.ORB_create(nfeatures=n_features)
        self.clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def keypoints(self, rgb: np.ndarray, mirrored: bool = False):
        cv2 = self.cv2
        grey = np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("L"))
        if mirrored:
            grey = np.ascontiguousarray(grey[:, ::-1])
        grey = self.clahe.apply(cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX))
        return self.orb.detectAndCompute(grey, None)

    def inliers(self, a, b) -> int:
        (ka, da), (kb, db) = a, b
        if da is None or db is None or len(ka) < 5 or len(kb) < 5:
            return 0
        pairs = self.matcher.knnMatch(da, db, k=2)
        good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.8 * n.distance]
        if len(good) < 6:
            return len(good) // 2
        src = np.float32([ka[m.queryIdx].pt for m in good])
        dst = np.float32([kb[m.trainIdx].pt for m in good])
        _, mask = self.cv2.estimateAffine2D(src, dst, method=self.cv2.RANSAC, ransacReprojThreshold=4.0)
        return int(mask.sum()) if mask is not None else 0


def read_original_labels(labels_csv: str | Path) -> dict[str, set[str]]:
    """dataset-master/labels.csv (``,Image,Category``) -> {BloodImage_00093: {"EOSINOPHIL"}}."""
    out: dict[str, set[str]] = {}
    with open(labels_csv, newline="") as f:
        for row in csv.DictReader(f):
            cats = {c.strip().upper() for c in (row.get("Category") or "").split(",") if c.strip()}
            out[f"BloodImage_{int(row['Image']):05d}"] = cats & set(CLASSES)
    return out


def match_sources(
    *,
    data_dir: str | Path,
    originals_dir: str | Path,
    labels_csv: str | Path,
    k: int = 15,
    min_inliers: int = 15,
    files: list[str] | None = None,
) -> list[SourceMatch]:
    """Find the original of every image under ``data_dir/<CLASS>/`` (or of ``files``,
    paths relative to ``data_dir``)."""
    data_dir, originals_dir = Path(data_dir), Path(originals_dir)
    labels = read_original_labels(labels_csv)
    originals = sorted(p for p in originals_dir.glob("*.jp*g") if labels.get(p.stem))
    if files is None:
        files = [
            f"{cls}/{p.name}"
            for cls in CLASSES
            if (data_dir / cls).is_dir()
            for p in sorted((data_dir / cls).iterdir())
            if p.suffix.lower() in {".jpeg", ".jpg", ".png"}
        ]
    t0 = time.monotonic()
    embed, verify = Embedder(), Verifier()
    o_rgb = [frame_rgb(p) for p in originals]
    o_emb = np.stack([embed(crop_variants(a)) for a in o_rgb])  # (originals, 40, d)
    o_kp = [(verify.keypoints(a), verify.keypoints(a, mirrored=True)) for a in o_rgb]
    o_cls = [labels[p.stem] for p in originals]
    log.info("%d originals embedded (%.0fs)", len(originals), time.monotonic() - t0)

    results: list[SourceMatch] = []
    batch = 64
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        rgbs = [frame_rgb(data_dir / f) for f in chunk]
        emb = embed(np.stack([stretch(nucleus_crop(a)) for a in rgbs]))
        sim = np.einsum("nd,mvd->nmv", emb, o_emb).max(axis=2)
        for f, rgb, s in zip(chunk, rgbs, sim, strict=True):
            cls = f.split("/")[0]
            allowed = np.array([cls in c for c in o_cls])
            s = np.where(allowed, s, -np.inf)
            cands = [int(j) for j in np.argsort(-s)[:k] if np.isfinite(s[j])]
            kp = verify.keypoints(rgb)
            scores = [max(verify.inliers(kp, o_kp[j][0]), verify.inliers(kp, o_kp[j][1])) for j in cands]
            if not scores:
                results.append(SourceMatch(f, UNMATCHED, 0, 0))
                continue
            order = np.argsort(scores)[::-1]
            best, runner = scores[order[0]], (scores[order[1]] if len(scores) > 1 else 0)
            source = originals[cands[order[0]]].stem if best >= min_inliers else UNMATCHED
            results.append(SourceMatch(f, source, int(best), int(runner)))
        if (start // batch) % 20 == 0:
            log.info("%d/%d images (%.0fs)", start + len(chunk), len(files), time.monotonic() - t0)
    return results


def write_sources(matches: list[SourceMatch], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "source", "inliers", "runner_up"])
        for m in matches:
            w.writerow([m.file, m.source, m.inliers, m.runner_up])
    return out


def read_sources(path: str | Path) -> dict[str, str]:
    """CSV written by :func:`write_sources` -> {"CLASS/name.jpeg": source or UNMATCHED}."""
    with open(path, newline="") as f:
        return {row["file"]: row["source"] for row in csv.DictReader(f)}
