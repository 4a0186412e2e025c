"""One preprocessing function for training and serving, and robust image loading."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import INPUT_SHAPE, load_and_prepare, load_image, prepare_image

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells"


def _roundtrip(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_prepare_image_shape_and_dtype():
    arr = load_and_prepare(next(CELLS.glob("EOSINOPHIL/*.jpeg")))
    assert arr.shape == INPUT_SHAPE and arr.dtype == np.uint8


@pytest.mark.slow  # imports TensorFlow (tf.data)
def test_tf_data_pipeline_uses_the_serving_function_exactly():
    from training.data import list_images, make_tf_dataset

    data = list_images(CELLS, limit_per_class=2)
    ds = make_tf_dataset(data, batch_size=8, shuffle=False, seed=0)
    batch_x = np.concatenate([x.numpy() for x, _ in ds])
    expected = np.stack([load_and_prepare(p) for p in data.paths]).astype(np.float32)
    np.testing.assert_array_equal(batch_x, expected)


def test_training_cache_matches_serving_function(tmp_path):
    from training.data import build_cache, read_cache

    cache = build_cache(CELLS, tmp_path / "c.npz", quality=95, limit_per_class=1)
    split, images, _ = read_cache(cache)
    expected = np.stack([load_and_prepare(CELLS / p) for p in split.paths])
    # WebP is lossy: the cache is the shared function's output up to small codec error
    assert np.abs(images.astype(float) - expected).mean() < 2.0


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    loaded = load_image(_roundtrip(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[:5].mean(axis=(0, 1))
    assert top[2] > 200 and top[0] < 60  # the left stripe is now on top


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("CMYK", (30, 20), (0, 255, 255, 0)),  # red in CMYK
        lambda: Image.new("RGBA", (30, 20), (255, 0, 0, 255)),
        lambda: Image.new("LA", (30, 20), (76, 255)),
        lambda: Image.new("P", (30, 20), 0).convert("RGB").convert("P"),
        lambda: Image.new("L", (30, 20), 128),
        lambda: Image.new("1", (30, 20), 1),
    ],
)
def test_modes_become_8bit_rgb(make):
    img = load_image(make())
    assert img.mode == "RGB" and img.size == (30, 20)
    assert prepare_image(img).shape == INPUT_SHAPE


def test_cmyk_jpeg_colour():
    img = load_image(_roundtrip(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_alpha_is_flattened_on_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert np.asarray(load_image(img)).min() == 255


def test_16bit_grayscale_is_scaled_not_clipped():
    arr = np.full((20, 30), 32768, np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    loaded = load_image(_roundtrip(img, "PNG"))
    value = np.asarray(loaded)[0, 0]
    assert loaded.mode == "RGB" and 120 <= value[0] <= 135 and value[0] == value[1] == value[2]


def test_float_image_is_scaled():
    img = Image.fromarray(np.full((20, 30), 0.5, np.float32))
    assert 120 <= np.asarray(load_image(img))[0, 0, 0] <= 135


# --------------------------------------------------------------------------- cell-centred crop

PBC = Path(__file__).resolve().parents[1] / "fixtures" / "pbc"
WHITE_CELLS = sorted(CELLS.glob("*/*.jpeg")) + sorted(
    p
    for folder in ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
    for p in (PBC / folder).glob("*.jpg")
)


def _nucleus_fraction(arr: np.ndarray) -> float:
    """Share of the crop's pixels that are stained nucleus (same score the finder uses)."""
    from classifier.preprocessing import nucleus_map

    return float((nucleus_map(arr.astype(np.float32)) > 0.25).mean())


@pytest.mark.parametrize("path", WHITE_CELLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cell_crop_finds_the_white_cell_and_centres_it(path):
    from classifier.preprocessing import CELL_CROP, CELL_INPUT_SHAPE, nucleus_map, prepare

    out = prepare(load_image(path), method=CELL_CROP)
    assert out.cell_found and out.array.shape == CELL_INPUT_SHAPE and out.array.dtype == np.uint8
    score = nucleus_map(out.array.astype(np.float32)) > 0.25
    ys, xs = np.nonzero(score)
    # the stained nucleus is near the middle of the crop and covers a sensible share of it
    assert abs(ys.mean() - 112) < 45 and abs(xs.mean() - 112) < 45
    assert 0.03 < score.mean() < 0.6


def test_cell_crop_normalises_scale():
    """A 120 px close-up, a 320x240 field crop and a 360 px CellaVision image look alike: the
    same cell at half and double size gives nearly the same crop."""
    from classifier.preprocessing import CELL_CROP, prepare

    img = load_image(PBC / "neutrophil" / "BNE_111504.jpg")
    base = prepare(img, method=CELL_CROP).array.astype(float)
    for factor in (0.4, 2.0):
        scaled = img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC)
        other = prepare(scaled, method=CELL_CROP).array.astype(float)
        assert abs(_nucleus_fraction(other) - _nucleus_fraction(base)) < 0.05
        assert np.abs(other - base).mean() < 20


def test_cell_crop_removes_a_colour_cast():
    """A yellow or blue illuminant is a per-channel gain; the white balance takes it out."""
    from classifier.preprocessing import CELL_CROP, prepare

    img = load_image(CELLS / "LYMPHOCYTE" / "_0_3975.jpeg")
    base = prepare(img, method=CELL_CROP).array.astype(float)
    for gain in ((1.0, 0.95, 0.7), (0.8, 0.9, 1.0)):
        cast = Image.fromarray(np.clip(np.asarray(img, float) * gain, 0, 255).astype(np.uint8))
        out = prepare(cast, method=CELL_CROP).array.astype(float)
        assert np.abs(out - base).mean() < 6


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (200, 150), (235, 225, 230)),  # empty slide
        Image.fromarray(np.random.default_rng(0).integers(200, 255, (120, 160, 3), dtype=np.uint8)),  # noise
        Image.new("RGB", (64, 64), (0, 0, 0)),  # black
    ],
    ids=["empty", "noise", "black"],
)
def test_no_white_cell_classifies_the_whole_image_and_says_so(img):
    from classifier.preprocessing import CELL_CROP, CELL_INPUT_SHAPE, prepare

    out = prepare(img, method=CELL_CROP)
    assert out.cell_found is False
    assert out.array.shape == CELL_INPUT_SHAPE
    left, top, right, bottom = out.box  # the whole image, padded square about its centre
    assert right - left == bottom - top == max(img.size)
    assert (left + right) / 2 == img.width / 2 and (top + bottom) / 2 == img.height / 2


def test_cell_crop_of_tiny_and_odd_images():
    from classifier.preprocessing import CELL_CROP, CELL_INPUT_SHAPE, prepare

    for size in ((1, 1), (3, 500), (500, 3)):
        assert prepare(Image.new("RGB", size, (120, 60, 200)), method=CELL_CROP).array.shape == CELL_INPUT_SHAPE


def test_frame_method_is_the_v1_v2_preprocessing():
    from classifier.preprocessing import FRAME, prepare

    img = load_image(next(CELLS.glob("EOSINOPHIL/*.jpeg")))
    out = prepare(img, method=FRAME)
    np.testing.assert_array_equal(out.array, prepare_image(img))
    assert out.cell_found is None


def test_unknown_method_is_refused():
    from classifier.preprocessing import prepare

    with pytest.raises(ValueError, match="unknown preprocessing method"):
        prepare(Image.new("RGB", (10, 10)), method="whole-slide")


def test_cell_cache_holds_the_serving_function_output(tmp_path):
    """Training's cell cache is `prepare(..., method=cell-crop-224)` up to WebP codec error."""
    from classifier.preprocessing import CELL_CROP, prepare
    from training.labs import LABELS, Item, build_cell_cache, read_cell_caches

    paths = WHITE_CELLS[:3] + WHITE_CELLS[-3:]
    items = [Item(str(p), p.name, LABELS.index("NEUTROPHIL"), "x", "lab", p.name, "train") for p in paths]
    cache = read_cell_caches([build_cell_cache(items, tmp_path / "c.npz", quality=95, workers=1)])
    expected = np.stack([prepare(load_image(p), method=CELL_CROP).array for p in paths])
    assert cache.method == CELL_CROP and cache.cell_found.all()
    assert np.abs(cache.images.astype(float) - expected).mean() < 2.0


def test_background_from_the_histogram_equals_numpy_percentile():
    from classifier.preprocessing import _background

    rng = np.random.default_rng(3)
    for shape in ((1, 1, 3), (2, 3, 3), (240, 320, 3), (97, 131, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = np.maximum(np.percentile(img.reshape(-1, 3).astype(float), 97, axis=0), 1.0)
        np.testing.assert_allclose(_background(img), expected, rtol=0, atol=1e-9)
