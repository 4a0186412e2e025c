"""Image loading and the single preprocessing function shared by training and serving.

Everything that turns "a file/upload" into "the array the model sees" lives here so
that the training pipeline (``training.data``) and the serving code
(``classifier.inference``) cannot drift apart:

* :func:`load_image` opens any Pillow-readable image and returns an upright 8-bit RGB
  ``PIL.Image`` (EXIF orientation applied; CMYK, 16-bit, float, palette, alpha and
  grayscale images converted).
* :func:`prepare_image` is THE shared preprocessing function: it resizes an RGB image
  to the model input size and returns a ``uint8`` array of shape
  ``(INPUT_HEIGHT, INPUT_WIDTH, 3)``.

The backbone's own normalisation ((x - 127) / 128 for EfficientNet-Lite) is a layer
inside the Keras model, so the model input is simply the uint8 RGB array cast to
float32 and nothing else has to be replicated elsewhere.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# The four white-blood-cell classes, in the order of the model's outputs.
CLASSES: tuple[str, ...] = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")

# Input size keeps the 4:3 aspect ratio of the 320x240 microscope crops.
INPUT_WIDTH = 224
INPUT_HEIGHT = 168
INPUT_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 3)
RESAMPLE = Image.Resampling.BILINEAR

# Background used when flattening transparent images (white, like an empty slide).
_ALPHA_BACKGROUND = (255, 255, 255)


def _high_bit_depth_to_8bit(img: Image.Image) -> Image.Image:
    """Map 16-bit / 32-bit integer / float single-channel images to 8-bit 'L'."""
    arr = np.asarray(img)
    arr = arr.astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) <= 65535 and arr.max(initial=0) > 255):
        scaled = arr / 65535.0 * 255.0
    elif img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if 0.0 <= lo and hi <= 1.0:
            scaled = arr * 255.0
        elif hi > lo:
            scaled = (arr - lo) / (hi - lo) * 255.0
        else:
            scaled = np.zeros_like(arr)
    else:  # 'I' already in 0..255
        scaled = arr
    scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def to_rgb8(img: Image.Image) -> Image.Image:
    """Return an upright 8-bit RGB copy of ``img``."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_depth_to_8bit(img).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK, YCbCr, LAB, HSV, L, 1 ... : Pillow's converters handle these.
    return img.convert("RGB")


def load_image(source: str | Path | bytes | BinaryIO | Image.Image) -> Image.Image:
    """Open ``source`` (path, bytes, file object or PIL image) as upright 8-bit RGB."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, (bytes, bytearray)):
        img = Image.open(io.BytesIO(source))
    else:
        img = Image.open(source)
    img.load()
    return to_rgb8(img)


def prepare_image(img: Image.Image) -> np.ndarray:
    """THE shared preprocessing step: RGB image -> uint8 array (INPUT_HEIGHT, INPUT_WIDTH, 3).

    Used by serving (``classifier.inference``), by the tf.data training pipeline (via
    ``tf.numpy_function``) and by the pre-decoded training cache.
    """
    img = to_rgb8(img)
    if img.size != (INPUT_WIDTH, INPUT_HEIGHT):
        img = img.resize((INPUT_WIDTH, INPUT_HEIGHT), RESAMPLE)
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def load_and_prepare(source: str | Path | bytes | BinaryIO | Image.Image) -> np.ndarray:
    """Convenience: :func:`load_image` followed by :func:`prepare_image`."""
    return prepare_image(load_image(source))
