"""Image loading and the single preprocessing function shared by training and serving.

Everything that turns "a file/upload" into "the array the model sees" lives here so
that the training pipeline (``training.data``) and the serving code
(``classifier.inference``) cannot drift apart:

* :func:`load_image` opens any Pillow-readable image and returns an upright 8-bit RGB
  ``PIL.Image`` (EXIF orientation applied; CMYK, 16-bit, float, palette, alpha and
  grayscale images converted).
* :func:`prepare` is THE shared preprocessing function. A model card names its method:

  - ``cell-crop-224`` (wbc-lite0-v3 on): find the white cell by its stained nucleus, crop a
    square around it whose side follows the cell's size, resize to 224x224. A 120 px close-up,
    a 320x240 field crop and a 360 px CellaVision image then look alike to the model. When no
    white cell is found, the whole image is padded square and used, and the result says so.
  - ``frame-224x168`` (wbc-lite0-v1/v2): the whole 4:3 image resized to 224x168.

The backbone's own normalisation ((x - 127) / 128 for EfficientNet-Lite) is a layer
inside the Keras model, so the model input is simply the uint8 RGB array cast to
float32 and nothing else has to be replicated elsewhere.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

# The four white-blood-cell classes of wbc-lite0-v1/v2, in the order of their outputs.
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
    """The ``frame-224x168`` method: RGB image -> uint8 array (INPUT_HEIGHT, INPUT_WIDTH, 3)."""
    img = to_rgb8(img)
    if img.size != (INPUT_WIDTH, INPUT_HEIGHT):
        img = img.resize((INPUT_WIDTH, INPUT_HEIGHT), RESAMPLE)
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def load_and_prepare(source: str | Path | bytes | BinaryIO | Image.Image) -> np.ndarray:
    """Convenience: :func:`load_image` followed by :func:`prepare_image`."""
    return prepare_image(load_image(source))


# --------------------------------------------------------------------------- cell-centred crop

FRAME = "frame-224x168"
CELL_CROP = "cell-crop-224"
METHODS = (FRAME, CELL_CROP)
CELL_SIZE = 224
CELL_INPUT_SHAPE = (CELL_SIZE, CELL_SIZE, 3)

_ANALYSIS_SIDE = 192  # the nucleus is looked for on a copy whose longer side is this
_CROP_PER_NUCLEUS = 2.0  # crop side / extent of the (dilated) nucleus region
_MIN_OD = 0.2  # stain score (red minus blue optical density) a nucleus reaches at least
_MIN_AREA = 0.004  # nucleus region, as a fraction of the analysed image, below which it is noise


@dataclass(frozen=True)
class Prepared:
    """The model's input for one image and how it was made."""

    array: np.ndarray  # uint8 (H, W, 3), the model input
    cell_found: bool | None  # False: no white cell was found, the whole image was used; None: not looked for
    box: tuple[int, int, int, int] | None  # (left, top, right, bottom) of the crop in the image


def input_shape(method: str) -> tuple[int, int, int]:
    if method == FRAME:
        return INPUT_SHAPE
    if method == CELL_CROP:
        return CELL_INPUT_SHAPE
    raise ValueError(f"unknown preprocessing method {method!r}; choose from {METHODS}")


def _background(rgb: np.ndarray) -> np.ndarray:
    """The slide's bright colour (per channel): the 97th percentile (numpy's linear
    interpolation), at least 1. For 8-bit images it is read off each channel's histogram,
    which gives the same value as ``np.percentile`` without sorting the image."""
    flat = rgb.reshape(-1, 3)
    if flat.dtype != np.uint8:
        return np.maximum(np.percentile(flat, 97, axis=0), 1.0)
    n = len(flat)
    pos = 0.97 * (n - 1)
    lo = int(np.floor(pos))
    frac = pos - lo
    out = np.empty(3)
    for c in range(3):
        cum = np.cumsum(np.bincount(flat[:, c], minlength=256))
        v_lo = np.searchsorted(cum, lo + 1)
        v_hi = np.searchsorted(cum, min(lo + 2, n))
        out[c] = v_lo + frac * (v_hi - v_lo)
    return np.maximum(out, 1.0)


# Public name of the background measurement, shared with the field detector
# (``classifier.detection``) so that both read the slide the same way.
slide_background = _background


def nucleus_map(rgb: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel stain score of white-cell nuclei: optical density in red light minus that in
    blue light, relative to the slide's own background colour.

    Romanowsky stains (Wright, Giemsa, May-Grünwald-Giemsa) colour nuclei with azure /
    methylene blue, which absorbs red light and lets blue through; the eosin of red cells
    absorbs blue and green more than red; the background absorbs nothing, and black (a
    rotated image's fill, dirt) absorbs all three alike. Normalising by the background makes
    the score independent of white balance and of a yellow, pink or blue cast."""
    if background is None:
        background = _background(rgb)
    rb = np.asarray(rgb, np.float32)[..., [0, 2]] / np.asarray(background, np.float32)[[0, 2]]
    od = -np.log(np.clip(rb, 1e-2, 1.0))
    return od[..., 0] - od[..., 1]


def find_cell(rgb: np.ndarray) -> tuple[float, float, float] | None:
    """(centre y, centre x, crop side) of the most prominent white cell in an RGB array,
    or None when there is no stained nucleus."""
    h, w = rgb.shape[:2]
    scale = _ANALYSIS_SIDE / max(h, w)
    small = np.asarray(rgb, np.uint8)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))
    else:
        scale = 1.0
    od = ndimage.gaussian_filter(nucleus_map(small, _background(small)), 1.5)
    peak = float(od.max())
    if peak < _MIN_OD:
        return None
    mask = od > max(_MIN_OD * 0.75, 0.4 * peak)
    # lobes of one nucleus are joined; separate cells stay apart
    joined = ndimage.binary_closing(mask, iterations=max(2, round(0.025 * max(small.shape))))
    labels, n = ndimage.label(joined)
    if n == 0:
        return None
    flat = labels.ravel()
    weight = (od * mask).ravel()

    def per_label(values):
        return np.bincount(flat, weights=values, minlength=n + 1)[1:]

    mass = per_label(weight)
    area = per_label(mask.ravel().astype(np.float64))
    ys, xs = np.indices(od.shape)
    cy = per_label(ys.ravel() * weight) / np.maximum(mass, 1e-6)
    cx = per_label(xs.ravel() * weight) / np.maximum(mass, 1e-6)
    # prefer the heavy nucleus, and between similar ones the one nearer the centre
    off = np.hypot((cy - od.shape[0] / 2) / od.shape[0], (cx - od.shape[1] / 2) / od.shape[1])
    best = int(np.argmax(mass * (1.0 - 0.8 * off)))
    if area[best] < _MIN_AREA * od.size:
        return None
    sl = ndimage.find_objects(((labels == best + 1) & mask).astype(np.int32))[0]
    extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, np.sqrt(area[best]) * 1.3)
    side = extent * _CROP_PER_NUCLEUS / scale
    side = float(np.clip(side, 0.15 * max(h, w), 1.5 * max(h, w)))
    return float(cy[best] / scale), float(cx[best] / scale), side


_WHITE = 235.0  # where the slide's background lands after white balance


def white_balance(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Scale each channel so that the slide's background becomes neutral light grey: a yellow,
    pink or blue illuminant or camera cast is a per-channel gain, and this removes it."""
    gain = (_WHITE / np.asarray(background, np.float64)).astype(np.float32)
    return np.clip(np.rint(np.asarray(rgb, np.float32) * gain), 0, 255).astype(np.uint8)


def _square_crop(img: Image.Image, cy: float, cx: float, side: float, fill: tuple[int, int, int]) -> Image.Image:
    """``side`` x ``side`` crop centred on (cy, cx), padded with ``fill`` outside the image,
    resized to CELL_SIZE."""
    left, top = cx - side / 2.0, cy - side / 2.0
    return img.transform(
        (CELL_SIZE, CELL_SIZE),
        Image.Transform.EXTENT,
        (left, top, left + side, top + side),
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )


def prepare_cell(img: Image.Image) -> Prepared:
    """The ``cell-crop-224`` method (see the module docstring)."""
    img = to_rgb8(img)
    rgb = np.asarray(img)
    background = _background(rgb)
    fill = tuple(int(v) for v in np.clip(background, 0, 255))
    found = find_cell(rgb)
    if found is None:
        h, w = rgb.shape[:2]
        cy, cx, side, ok = h / 2.0, w / 2.0, float(max(h, w)), False
    else:
        (cy, cx, side), ok = found, True
    out = white_balance(np.asarray(_square_crop(img, cy, cx, side, fill), np.float32), background)
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    return Prepared(np.ascontiguousarray(out), ok, box)


def prepare(img: Image.Image, *, method: str) -> Prepared:
    """THE shared preprocessing step, used by serving (``classifier.inference``), training's
    caches and evaluation."""
    if method == CELL_CROP:
        return prepare_cell(img)
    if method == FRAME:
        return Prepared(prepare_image(img), None, None)
    raise ValueError(f"unknown preprocessing method {method!r}; choose from {METHODS}")
