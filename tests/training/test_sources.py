"""training.sources finds the original microscope image behind an augmented copy.

Real BCCD fixture cells play the originals; the copies are made the way dataset2's were
(affine warp with rotation, shear, zoom and shift, mirroring, contrast stretch, JPEG)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.sources import (
    UNMATCHED,
    match_sources,
    nucleus_centre,
    read_original_labels,
    read_sources,
    write_sources,
)

pytestmark = pytest.mark.slow  # runs the backbone

pytest.importorskip("cv2")

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells"
ORIGINALS = [  # (class, fixture) -> BloodImage_0000i
    ("EOSINOPHIL", "_1_5031.jpeg"),
    ("EOSINOPHIL", "_10_5476.jpeg"),
    ("LYMPHOCYTE", "_0_3975.jpeg"),
    ("LYMPHOCYTE", "_2_6981.jpeg"),
    ("NEUTROPHIL", "_0_1966.jpeg"),
    ("NEUTROPHIL", "_12_4753.jpeg"),
]
FOREIGN = ("NEUTROPHIL", "_13_7598.jpeg")  # a cell that is not among the originals


def augment(img: Image.Image, *, angle: float, shear: float, zoom: float, shift: tuple[int, int], mirror: bool):
    """An affine copy in dataset2's style: warp about the centre, black fill, contrast x2."""
    w, h = img.size
    if mirror:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1, shear], [0, 1]]) / zoom
    c = np.array([w / 2, h / 2])
    offset = c - rot @ c + np.array(shift)
    coeffs = (rot[0, 0], rot[0, 1], offset[0], rot[1, 0], rot[1, 1], offset[1])
    warped = img.transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    arr = np.asarray(warped, np.float32)
    return Image.fromarray(np.clip((arr - arr.mean()) * 2.0 + arr.mean(), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    originals = root / "JPEGImages"
    originals.mkdir()
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "Image", "Category"])
        for i, (cls, name) in enumerate(ORIGINALS):
            Image.open(CELLS / cls / name).save(originals / f"BloodImage_{i:05d}.jpg", quality=95)
            w.writerow(["", i, cls])
        w.writerow(["", 98, "NEUTROPHIL, EOSINOPHIL"])  # multi-label rows parse
        w.writerow(["", 99, ""])  # unlabelled originals are never candidates
    aug = root / "TRAIN"
    expected = {}
    params = [
        dict(angle=17, shear=0.12, zoom=1.1, shift=(12, -8), mirror=False),
        dict(angle=-25, shear=-0.08, zoom=0.92, shift=(-10, 6), mirror=True),
    ]
    for i, (cls, name) in enumerate(ORIGINALS):
        (aug / cls).mkdir(parents=True, exist_ok=True)
        for j, p in enumerate(params):
            out = f"_{j}_{100 * i + j}.jpeg"
            augment(Image.open(CELLS / cls / name).convert("RGB"), **p).save(aug / cls / out, quality=90)
            expected[f"{cls}/{out}"] = f"BloodImage_{i:05d}"
    cls, name = FOREIGN
    augment(Image.open(CELLS / cls / name).convert("RGB"), **params[0]).save(aug / cls / "_9_9999.jpeg")
    expected[f"{cls}/_9_9999.jpeg"] = UNMATCHED
    return root, expected


def test_read_original_labels_handles_multi_and_blank_rows(dataset):
    labels = read_original_labels(dataset[0] / "labels.csv")
    assert labels["BloodImage_00000"] == {"EOSINOPHIL"}
    assert labels["BloodImage_00098"] == {"NEUTROPHIL", "EOSINOPHIL"}
    assert labels["BloodImage_00099"] == set()


def test_nucleus_centre_lands_on_the_stained_cell():
    # LYMPHOCYTE _0_3975: the lymphocyte sits right of centre in the lower half
    rgb = np.asarray(Image.open(CELLS / "LYMPHOCYTE" / "_0_3975.jpeg").convert("RGB"), np.float32)
    y, x = nucleus_centre(rgb)
    patch = rgb[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5]
    assert (patch[..., 2] - patch[..., 1]).mean() > 60  # violet nucleus, not pink RBC or background


def test_match_sources_recovers_every_original_and_rejects_a_stranger(dataset, tmp_path):
    root, expected = dataset
    matches = match_sources(
        data_dir=root / "TRAIN", originals_dir=root / "JPEGImages", labels_csv=root / "labels.csv", k=3
    )
    got = {m.file: m.source for m in matches}
    assert got == expected
    for m in matches:
        if m.source != UNMATCHED:
            assert m.inliers >= 15 and m.inliers > 2 * m.runner_up
    path = write_sources(matches, tmp_path / "s.csv")
    assert read_sources(path) == expected
