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
