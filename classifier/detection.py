"""Whole-field analysis: find the white cells in a smear field, cut each one out for the cell
classifier, and count the red cells and platelets.

A *field* is one microscope camera frame (BCCD: 640x480) with red cells, platelets and zero or
more white cells anywhere in it. A *single-cell image* is a crop around one white cell (the
``bloodcells`` crops, 320x240; CellaVision/PBC crops, 360x363).

Public API (the Django integration builds on these and nothing else)::

    from classifier.detection import analyse_upload, crop_cell, detect_field, looks_like_field

    decision = looks_like_field(img)        # FieldDecision(is_field, reason); unpacks as (bool, str)
    field = detect_field(img)               # FieldAnalysis
    for cell in field.white_cells:          # WhiteCell, best score first
        cell.box                            # (x0, y0, x1, y1) in field pixels, clipped to the field
        cell.score                          # stain mass of the nucleus, for ordering
        cell.touches_edge                   # the field's edge cuts the cell: flag it for the reviewer
        crop = crop_cell(img, cell.box)     # PIL image shaped like a bloodcells crop: feed it to
                                            # classifier.inference.Classifier.predict unchanged
    field.rbc_count, field.platelet_count   # estimates for this field
    upload = analyse_upload(img)            # both steps at once: UploadAnalysis(decision, field, crops)

``img`` is a ``PIL.Image`` (any mode: :func:`classifier.preprocessing.to_rgb8` makes it 8-bit
RGB), a path, or bytes. An unreadable, empty or too small image raises :class:`FieldImageError`
(a ``ValueError``) with a message meant for the user. A field without white cells is a valid
result (``white_cells == ()``), not an error.

Method (``wbc-detector-v1``; figures and tuning in ``classifier/models/wbc-detector-v1.md``)
------------------------------------------------------------------------------------------
Stain-based segmentation plus a small linear box regressor, shared with the cell classifier's
preprocessing: the field is halved (the classifier's nucleus finder works at a similar scale),
the slide background is measured with
:func:`classifier.preprocessing.slide_background` and the nucleus stain score with
:func:`classifier.preprocessing.nucleus_map` (red- minus blue-light optical density).

* **White cells.** Pixels whose nucleus score reaches ``Params.nucleus_od`` seed a nucleus; its
  paler parts join down to ``nucleus_low`` x that (hysteresis). Pieces closer than ``lobe_gap``
  are one nucleus (the lobes of a neutrophil); a nucleus smaller than ``nucleus_min_area`` is a
  platelet clump or debris. BCCD's boxes hold the whole cell (cytoplasm, an eosinophil's granule
  cloud), so the box is the nucleus's box grown on each side by what a small learned *box
  regressor* reads there: strips running outward from that side (:func:`box_features`: stain,
  haemoglobin/granule density, nucleus score, granule texture, share of non-slide pixels) and a
  ridge regression of the annotated cell's extent on them (``BOX_WEIGHTS``, one model for the
  four sides). Two nuclei whose cell boxes cover more than ``merge_overlap`` of the smaller are
  one cell (an eosinophil's lobes with granules between them). With ``box_weights=()`` the box
  is the nucleus box grown by ``grow_fraction`` x its larger side + ``grow_px`` (the first
  version). All these settings and weights were fitted on BCCD train/val fields, never on the
  held-out ones (``python -m training.evaluate_fields --fit``). A box is clipped to the field;
  ``touches_edge`` says the cell (unclipped box or nucleus) reaches the field's edge.
* **Red cells.** Haemoglobin absorbs green light: pixels with a green optical density above
  ``rbc_od`` (outside white cells), holes filled (pale centres), form the red-cell mask; the count
  is the number of its distance-transform peaks (one per cell, touching cells split).
* **Platelets.** Specks with a nucleus score above ``platelet_od`` whose area is within
  ``platelet_area``, outside white cells.

The detector is calibrated at BCCD's magnification (a red cell ~100 px across at 640x480). A
camera with another pixel size needs ``pixel_scale`` (field pixels per BCCD pixel).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from classifier.preprocessing import load_image, nucleus_map, slide_background, to_rgb8

__all__ = [
    "DETECTOR_NAME",
    "FieldAnalysis",
    "FieldDecision",
    "FieldImageError",
    "Params",
    "StainMaps",
    "UploadAnalysis",
    "WhiteCell",
    "analyse_upload",
    "crop_cell",
    "analyse_maps",
    "box_features",
    "box_measures",
    "find_nuclei",
    "Nucleus",
    "detect_field",
    "find_white_cells",
    "looks_like_field",
    "stain_maps",
]

DETECTOR_NAME = "wbc-detector-v1"

# The crop handed to the classifier: the bloodcells crops are whole 640x480 fields halved, so a
# 640x480 window of the field around the cell, halved, is what the classifier was trained on.
CROP_WINDOW = (640, 480)
CROP_SIZE = (320, 240)
DARK_SLIDE = 40  # a slide background darker than this (8-bit) is a black or unlit frame
MIN_SIDE = 64  # smaller images are refused: nothing on them can be a field or a cell


# Fitted by ``python -m training.evaluate_fields --fit`` (ridge regression, work px of cell
# beyond each side of the nucleus box; the 230 tuning fields); paste its output here.
BOX_WEIGHTS: tuple[float, ...] = (
    -30.09432, -8.745684, -19.050172, -7.394893, -7.464802, -5.229708,
    -11.317526, -6.103908, -0.492242, 2.72674, 3.629387, 4.502847,
    0.305032, 8.904262, 5.093819, 2.587197, 52.565823, 49.365859,
    24.802645, 33.19245, 20.592423, 26.272585, 15.597191, 5.520997,
    -4.526885, -8.649718, -12.539644, -7.214914, -20.163093, -6.525524,
    -10.089969, -22.382069, 12.484944, 2.506691, 1.655824, 20.581314,
    13.740173, 2.419771, 1.396823, 6.045264, -21.299063, -13.363556,
    -8.15172, 11.342762, -10.194527, 4.528682, 3.659134, -13.652807,
    99.2962, 259.991537, -60.984117, -101.187649, -444.343737, 283.957233,
    -105.214605, 42.99179, -38.264102, -6.21268, 217.13893, -137.719379,
    133.783114, 110.309937, -117.500065, 155.627844, 4.871151, 0.169417,
    4.301959, -2.050545, 0.399722, -0.406785, -1.062371, -0.129871,
    0.274153, -0.298136, -3.670342, 1.318865, 0.480743, 1.313521,
    -3.693743, 5.346284, 0.425963, -2.519832, 5.007517, -0.014497,
    2.675231, 1.624175, 2.789109, 1.541255, 0.467161, -0.353153,
    2.929745, -1.413589, -0.7749, -1.235297, 0.097265, -0.518296,
    0.185274, -0.105384, -0.02694, -8.271449,
)



class FieldImageError(ValueError):
    """The upload is not an image this module can analyse; the message says why."""


@dataclass(frozen=True)
class Params:
    """Detector settings (field pixels are at BCCD's magnification; ``work`` pixels are halved).
    The defaults are the values fitted on BCCD train/val by ``training.evaluate_fields --fit``."""

    nucleus_od: float = 0.25  # nucleus stain score threshold
    nucleus_low: float = 0.7  # paler nucleus parts join down to this fraction of nucleus_od
    nucleus_min_area: int = 800  # work px^2 of a whole nucleus; platelet clumps and specks stay below
    lobe_min_area: int = 38  # work px^2 of one piece of a nucleus
    lobe_gap: int = 16  # work px; nucleus pieces closer than this are one cell
    grow_fraction: float = 0.15  # without box_weights: box growth per side, fraction of the nucleus's size
    grow_px: float = 0.0  # plus this many field px per side
    box_weights: tuple[float, ...] = BOX_WEIGHTS  # the box regressor (BOX_WEIGHTS); empty: fixed growth above
    merge_overlap: float = 0.5  # two cell boxes covering more than this of the smaller are one cell
    edge_px: int = 2  # field px: a cell this close to the edge touches it
    rbc_od: float = 0.12  # green optical density of red-cell pixels
    rbc_peak_min: float = 10.0  # work px: a red cell's inscribed radius is at least this
    rbc_peak_sep: int = 14  # work px between two red cells' centres
    platelet_od: float = 0.24
    platelet_area: tuple[int, int] = (6, 150)  # work px^2
    pixel_scale: float = 1.0  # field px per BCCD px (camera pixel size / magnification)


PARAMS = Params()


@dataclass(frozen=True)
class WhiteCell:
    """One white cell found in a field."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) field pixels, x1/y1 exclusive, clipped to the field
    score: float  # nucleus stain mass; larger is surer
    touches_edge: bool  # the field's edge cuts the cell: the crop is partial
    nucleus_box: tuple[int, int, int, int]  # the stained nucleus alone, same convention
    nucleus_area: float = 0.0  # field px^2 of stained nucleus

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.nucleus_box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


@dataclass(frozen=True)
class FieldAnalysis:
    """Everything :func:`detect_field` found in one field."""

    width: int
    height: int
    white_cells: tuple[WhiteCell, ...]  # best score first; empty for a field without white cells
    rbc_count: int  # estimated red cells in the field
    platelet_count: int  # estimated platelets in the field
    detector: str = DETECTOR_NAME
    elapsed_ms: float = field(default=0.0, compare=False)


class FieldDecision(NamedTuple):
    """What :func:`looks_like_field` decided, and why (a sentence to show the user)."""

    is_field: bool
    reason: str


@dataclass(frozen=True)
class UploadAnalysis:
    """An upload analysed: what it is, and for a field the cells cut from it (same order as
    ``field.white_cells``). For a single-cell image ``field`` is None and ``crops`` is empty:
    classify the image itself."""

    decision: FieldDecision
    field: FieldAnalysis | None
    crops: tuple[Image.Image, ...]


Source = str | Path | bytes | BinaryIO | Image.Image


def _open(image: Source) -> Image.Image:
    try:
        img = to_rgb8(image) if isinstance(image, Image.Image) else load_image(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise FieldImageError(f"not a readable image: {exc}") from exc
    except (TypeError, AttributeError) as exc:
        raise FieldImageError(f"expected an image, a path or bytes, got {type(image).__name__}") from exc
    if min(img.size) < MIN_SIDE:
        raise FieldImageError(f"image is {img.size[0]}x{img.size[1]}: too small (under {MIN_SIDE} px) to analyse")
    return img


def _work_image(img: Image.Image, params: Params) -> tuple[np.ndarray, float]:
    """The field at the working scale (BCCD pixels halved) and field px per work px."""
    factor = 2.0 * params.pixel_scale
    w, h = img.size
    if factor == 2.0:
        small = img.reduce(2)
    else:
        small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.BOX)
    return np.asarray(small), w / small.size[0]


def _boxes_of(labels: np.ndarray, n: int) -> list[tuple[slice, slice] | None]:
    return ndimage.find_objects(labels, max_label=n)


# The box regressor's view of a candidate: for each side of the nucleus box, strips of
# _PROFILE_STEP work px running outward (_PROFILE_STRIPS of them, 128 field px in all), each
# strip spanning the nucleus across and averaged. What a strip holds is measured by
# _MEASURES maps: total optical density (anything stained), green-light optical density
# (haemoglobin, eosinophil granules), the nucleus score, a granule texture (local contrast in
# green light) and the share of pixels darker than the bare slide.
_PROFILE_STEP = 4
_PROFILE_STRIPS = 16
_MEASURES = 5
BOX_FEATURES = _MEASURES * _PROFILE_STRIPS + _PROFILE_STRIPS + 4


def box_features(measures: np.ndarray, nucleus_box: tuple[int, int, int, int], nucleus_area: float) -> np.ndarray:
    """(4, BOX_FEATURES) features of one nucleus for the box regressor, one row per side
    (left, top, right, bottom); ``nucleus_box`` and ``nucleus_area`` in work px. Strips past the
    field's edge read 0 and are flagged."""
    _, h, w = measures.shape
    x0, y0, x1, y1 = nucleus_box
    across_x = measures[:, y0:y1, :].mean(1)  # (K, w): columns averaged over the nucleus's rows
    across_y = measures[:, :, x0:x1].mean(2)  # (K, h)
    size = max(x1 - x0, y1 - y0)
    out = np.zeros((4, BOX_FEATURES), np.float32)
    for side, (profile, start, sign, limit) in enumerate(
        ((across_x, x0, -1, w), (across_y, y0, -1, h), (across_x, x1, 1, w), (across_y, y1, 1, h))
    ):
        for b in range(_PROFILE_STRIPS):
            near, far = start + sign * b * _PROFILE_STEP, start + sign * (b + 1) * _PROFILE_STEP
            lo, hi = max(0, min(near, far)), min(limit, max(near, far))
            if hi > lo:
                out[side, b : _MEASURES * _PROFILE_STRIPS : _PROFILE_STRIPS] = profile[:, lo:hi].mean(1)
                out[side, _MEASURES * _PROFILE_STRIPS + b] = 1.0
        length = (x1 - x0) if side % 2 == 0 else (y1 - y0)
        out[side, -4:] = (size, length, nucleus_area / 100.0, 1.0)
    return out


@dataclass(frozen=True)
class Nucleus:
    box: tuple[int, int, int, int]  # work px
    area: float  # work px^2
    mass: float


def _nuclei(od: np.ndarray, params: Params) -> list[Nucleus]:
    """The stained nuclei of a field (work scale), lobes joined, small ones dropped."""
    # hysteresis: a nucleus reaches nucleus_od somewhere; its paler parts join down to nucleus_low
    seeds = od > params.nucleus_od
    labels, n = ndimage.label(od > params.nucleus_od * params.nucleus_low)
    if n == 0 or not seeds.any():
        return []
    idx = np.arange(1, n + 1)
    seeded = np.zeros(n + 1, bool)
    seeded[1:] = ndimage.maximum(seeds, labels, idx) > 0
    area = ndimage.sum_labels(np.ones_like(od), labels, idx)
    # lobes may be small; a whole nucleus is checked once the lobes are joined
    seeded[1:] &= area >= params.lobe_min_area
    nuclei = seeded[labels]
    # lobes of one nucleus (and a nucleus split by a pale band) become one region
    grouped, m = ndimage.label(ndimage.binary_dilation(nuclei, iterations=max(1, params.lobe_gap // 2)))
    groups = np.where(nuclei, grouped, 0)
    gidx = np.arange(1, m + 1)
    g_area = ndimage.sum_labels(np.ones_like(od), groups, gidx)
    g_mass = ndimage.sum_labels(od, groups, gidx)
    out = []
    for k, sl in zip(gidx, _boxes_of(groups, m), strict=True):
        if sl is not None and g_area[k - 1] >= params.nucleus_min_area:
            ys, xs = sl
            out.append(Nucleus((xs.start, ys.start, xs.stop, ys.stop), float(g_area[k - 1]), float(g_mass[k - 1])))
    return out


def find_nuclei(maps: StainMaps, *, params: Params = PARAMS) -> list[Nucleus]:
    """The white cells' nuclei before any box is drawn (work px; the fitting command's input)."""
    return _nuclei(maps.nucleus, params)


def box_measures(maps: StainMaps) -> np.ndarray:
    """(_MEASURES, h, w) float32 maps of a field that :func:`box_features` reads."""
    rgb, background, nucleus = maps.rgb, maps.background, maps.nucleus
    # optical density per 8-bit level and channel: a table lookup is far cheaper than a log per pixel
    levels = np.arange(256, dtype=np.float32)[:, None] / np.asarray(background, np.float32)
    table = -np.log(np.clip(levels, 1e-2, 1.0))
    rgb = np.asarray(rgb, np.uint8)
    green = table[rgb[..., 1], 1]
    total = table[rgb[..., 0], 0] + green + table[rgb[..., 2], 2]
    texture = ndimage.uniform_filter(np.abs(green - ndimage.uniform_filter(green, 3)), 3)
    return np.stack([total, green, nucleus, texture, (total > 0.15).astype(np.float32)])


def _cell_extent(nuclei: list[Nucleus], maps: StainMaps, params: Params) -> list[tuple[float, ...]]:
    """Work px of cell beyond (left, top, right, bottom) of each nucleus box."""
    if params.box_weights:
        weights = np.asarray(params.box_weights, np.float32)
        measures = box_measures(maps)
        return [tuple(np.maximum(box_features(measures, n.box, n.area) @ weights, 0.0)) for n in nuclei]
    grow = [params.grow_fraction * max(n.box[2] - n.box[0], n.box[3] - n.box[1]) for n in nuclei]
    return [(g + params.grow_px * params.pixel_scale / maps.factor,) * 4 for g in grow]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection of two boxes over the smaller one's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def _white_cells(maps: StainMaps, params: Params):
    """(cells, work-scale mask of every cell box)."""
    od, factor, (fw, fh) = maps.nucleus, maps.factor, maps.size
    h, w = od.shape
    nuclei = _nuclei(od, params)
    # (cell box, nucleus box) in work px, mass, area
    found = [
        ([n.box[0] - e[0], n.box[1] - e[1], n.box[2] + e[2], n.box[3] + e[3]], list(n.box), n.mass, n.area)
        for n, e in zip(nuclei, _cell_extent(nuclei, maps, params), strict=True)
    ]
    # nuclei of one cell that the lobe gap did not join (an eosinophil's two lobes with granules
    # between them): their cell boxes mostly cover each other; separate cells barely overlap
    merged = True
    while merged and params.merge_overlap < 1.0:
        merged = False
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                a, b = found[i], found[j]
                if _overlap(a[0], b[0]) > params.merge_overlap:
                    found[i] = (
                        [min(a[0][0], b[0][0]), min(a[0][1], b[0][1]), max(a[0][2], b[0][2]), max(a[0][3], b[0][3])],
                        [min(a[1][0], b[1][0]), min(a[1][1], b[1][1]), max(a[1][2], b[1][2]), max(a[1][3], b[1][3])],
                        a[2] + b[2],
                        a[3] + b[3],
                    )
                    del found[j]
                    merged = True
                    break
            if merged:
                break
    cells = []
    cell_mask = np.zeros(od.shape, bool)
    edge = params.edge_px * params.pixel_scale
    for cell_box, nuc_box, mass, area in found:
        bx0, by0, bx1, by1 = (v * factor for v in cell_box)
        nx0, ny0, nx1, ny1 = (v * factor for v in nuc_box)
        touches = (
            bx0 < -edge
            or by0 < -edge
            or bx1 > fw + edge
            or by1 > fh + edge
            or nuc_box[0] == 0
            or nuc_box[1] == 0
            or nuc_box[2] == w
            or nuc_box[3] == h
        )
        box = (max(0, round(bx0)), max(0, round(by0)), min(fw, round(bx1)), min(fh, round(by1)))
        nbox = (round(nx0), round(ny0), min(fw, round(nx1)), min(fh, round(ny1)))
        cells.append(WhiteCell(box, mass, bool(touches), nbox, area * factor**2))
        cell_mask[
            int(by0 / factor) if by0 > 0 else 0 : max(0, int(np.ceil(by1 / factor))),
            int(bx0 / factor) if bx0 > 0 else 0 : max(0, int(np.ceil(bx1 / factor))),
        ] = True
    cells.sort(key=lambda c: -c.score)
    return cells, cell_mask


def _red_cells(rgb: np.ndarray, background: np.ndarray, exclude: np.ndarray, params: Params) -> int:
    green = np.asarray(rgb[..., 1], np.float32) / np.float32(background[1])
    od = -np.log(np.clip(green, 1e-2, 1.0))
    od = ndimage.uniform_filter(od, 3)
    mask = ndimage.binary_fill_holes(od > params.rbc_od) & ~exclude
    mask = ndimage.binary_opening(mask, iterations=2)
    dist = ndimage.distance_transform_edt(mask)
    sep = max(3, round(params.rbc_peak_sep / params.pixel_scale * params.pixel_scale))
    peaks = (dist == ndimage.maximum_filter(dist, size=sep)) & (dist >= params.rbc_peak_min)
    # a plateau of equal maxima is one cell
    _, n = ndimage.label(ndimage.binary_dilation(peaks, iterations=2))
    return int(n)


def _platelets(od: np.ndarray, exclude: np.ndarray, params: Params) -> int:
    mask = (od > params.platelet_od) & ~exclude
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0
    area = ndimage.sum_labels(np.ones_like(od), labels, np.arange(1, n + 1))
    lo, hi = params.platelet_area
    return int(np.count_nonzero((area >= lo) & (area <= hi)))


@dataclass(frozen=True)
class StainMaps:
    """A field at the working scale (BCCD pixels halved), as :func:`detect_field` reads it."""

    rgb: np.ndarray  # uint8 (h, w, 3)
    background: np.ndarray  # the slide's colour, per channel
    nucleus: np.ndarray  # float32 (h, w): smoothed nucleus stain score
    factor: float  # field px per work px
    size: tuple[int, int]  # the field's (width, height)


def stain_maps(image: Source, *, params: Params = PARAMS) -> StainMaps:
    """First half of :func:`detect_field`: the field at the working scale and its stain maps."""
    img = _open(image)
    rgb, factor = _work_image(img, params)
    background = slide_background(rgb)
    nucleus = ndimage.gaussian_filter(nucleus_map(rgb, background), 1.0)
    return StainMaps(rgb, background, nucleus, factor, img.size)


def find_white_cells(maps: StainMaps, *, params: Params = PARAMS) -> tuple[WhiteCell, ...]:
    """Only the white cells of :func:`analyse_maps`."""
    if float(np.max(maps.background)) < DARK_SLIDE:
        return ()
    return tuple(_white_cells(maps, params)[0])


def analyse_maps(maps: StainMaps, *, params: Params = PARAMS, elapsed_from: float | None = None) -> FieldAnalysis:
    """Second half of :func:`detect_field` (the tuning command varies ``params`` on the same maps)."""
    if float(np.max(maps.background)) < DARK_SLIDE:  # no light through the slide: nothing to see
        return FieldAnalysis(maps.size[0], maps.size[1], (), 0, 0)
    cells, cell_mask = _white_cells(maps, params)
    return FieldAnalysis(
        width=maps.size[0],
        height=maps.size[1],
        white_cells=tuple(cells),
        rbc_count=_red_cells(maps.rgb, maps.background, cell_mask, params),
        platelet_count=_platelets(maps.nucleus, cell_mask, params),
        elapsed_ms=0.0 if elapsed_from is None else (time.perf_counter() - elapsed_from) * 1000.0,
    )


def detect_field(image: Source, *, params: Params = PARAMS) -> FieldAnalysis:
    """Find the white cells in a field and count its red cells and platelets."""
    start = time.perf_counter()
    return analyse_maps(stain_maps(image, params=params), params=params, elapsed_from=start)


def crop_cell(field_image: Source, box: tuple[int, int, int, int], *, pixel_scale: float = 1.0) -> Image.Image:
    """The cell in ``box`` (field pixels) cut out as the cell classifier expects it: a 640x480
    window of the field (BCCD pixels; ``pixel_scale`` adapts another camera) centred on the
    cell, halved to 320x240 like a ``bloodcells`` crop. Where the window leaves the field it is
    filled with the slide's background colour, so the classifier's nucleus finder still centres
    this cell."""
    img = _open(field_image)
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty box {box}")
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ww, wh = round(CROP_WINDOW[0] * pixel_scale), round(CROP_WINDOW[1] * pixel_scale)
    left, top = round(cx - ww / 2.0), round(cy - wh / 2.0)
    fill = tuple(int(v) for v in np.clip(slide_background(np.asarray(img.reduce(4))), 0, 255))
    window = Image.new("RGB", (ww, wh), fill)
    window.paste(img.crop((max(0, left), max(0, top), min(img.width, left + ww), min(img.height, top + wh))),
                 (max(0, -left), max(0, -top)))
    # averaged, not sampled, like the halved fields the classifier was trained on
    return window.resize(CROP_SIZE, Image.Resampling.BOX)


def looks_like_field(image: Source, *, params: Params = PARAMS) -> FieldDecision:
    """Decide whether an upload is a whole field or a single-cell image, with the reason.

    A field is at least 640x480 at BCCD's magnification (a red cell ~100 px across) and shows
    red cells around any white cell; a single-cell image is smaller (bloodcells 320x240,
    CellaVision 360x363), or one white cell fills most of it."""
    img = _open(image)
    w, h = img.size
    need_w, need_h = (round(v * params.pixel_scale) for v in CROP_WINDOW)
    if max(w, h) < max(need_w, need_h) * 0.9 or min(w, h) < min(need_w, need_h) * 0.9:
        return FieldDecision(
            False, f"single cell: the image is {w}x{h}, smaller than a field ({need_w}x{need_h} or larger)"
        )
    found = detect_field(img, params=params)
    if len(found.white_cells) == 1:
        x0, y0, x1, y1 = found.white_cells[0].box
        share = (x1 - x0) * (y1 - y0) / float(w * h)
        if share > 0.45:
            return FieldDecision(
                False, f"single cell: one white cell covers {share:.0%} of the {w}x{h} image"
            )
    if found.rbc_count == 0 and not found.white_cells:
        return FieldDecision(True, f"field ({w}x{h}), but no red or white cells were found in it")
    return FieldDecision(
        True,
        f"field: {w}x{h} with {len(found.white_cells)} white cell(s) and about {found.rbc_count} red cells",
    )


def analyse_upload(image: Source, *, params: Params = PARAMS) -> UploadAnalysis:
    """:func:`looks_like_field`, then for a field :func:`detect_field` and a :func:`crop_cell`
    for each white cell found."""
    img = _open(image)
    decision = looks_like_field(img, params=params)
    if not decision.is_field:
        return UploadAnalysis(decision, None, ())
    found = detect_field(img, params=params)
    crops = tuple(crop_cell(img, c.box, pixel_scale=params.pixel_scale) for c in found.white_cells)
    return UploadAnalysis(decision, found, crops)


def with_params(**changes) -> Params:
    """A copy of the fitted settings with ``changes`` (used by the fitting command)."""
    return replace(PARAMS, **changes)
