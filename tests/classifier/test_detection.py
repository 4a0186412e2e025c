"""Whole-field analysis (classifier.detection) on committed BCCD fields and synthetic images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from classifier.detection import (
    BOX_FEATURES,
    BOX_WEIGHTS,
    FieldImageError,
    Params,
    analyse_upload,
    crop_cell,
    detect_field,
    looks_like_field,
)
from classifier.preprocessing import CELL_CROP, prepare
from training.evaluate_fields import iou, read_annotation

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIELDS = FIXTURES / "fields"
TWO_INSIDE, ONE_AT_EDGE, UNANNOTATED_EDGE = "BloodImage_00010", "BloodImage_00043", "BloodImage_00133"


def _field(stem: str) -> Image.Image:
    return Image.open(FIELDS / f"{stem}.jpg")


def _annotation(stem: str):
    return read_annotation(FIELDS / f"{stem}.xml")


def _synthetic_field(n_red: int, *, white_cell: bool = True) -> Image.Image:
    """A 640x480 slide with ``n_red`` pink discs (~100 px, some touching) and one purple
    nucleus in a pale cytoplasm, coloured like BCCD."""
    img = Image.new("RGB", (640, 480), (208, 210, 206))
    draw = ImageDraw.Draw(img)
    if white_cell:
        draw.ellipse((250, 170, 450, 370), fill=(190, 170, 200))
        draw.ellipse((280, 200, 420, 340), fill=(95, 80, 170))
    spots = [(60, 60), (158, 60), (60, 420), (160, 420), (560, 60), (560, 160), (560, 300), (560, 420), (370, 430),
             (60, 240)][:n_red]
    for x, y in spots:
        draw.ellipse((x - 48, y - 48, x + 48, y + 48), fill=(190, 130, 130))
    return img


@pytest.mark.parametrize("stem", [TWO_INSIDE, ONE_AT_EDGE])
def test_finds_every_annotated_white_cell_and_nothing_else(stem):
    found = detect_field(_field(stem))
    truth = _annotation(stem).wbc
    assert len(found.white_cells) == len(truth)
    for box in truth:
        assert max(iou(c.box, box) for c in found.white_cells) >= 0.5


def test_box_regressor_has_one_weight_per_feature():
    assert len(BOX_WEIGHTS) == BOX_FEATURES


def test_fitted_boxes_hold_the_whole_cell_better_than_a_fixed_growth():
    # the annotated boxes hold the cytoplasm, whose extent the nucleus box does not tell
    def mean_iou(params):
        ious = []
        for stem in (TWO_INSIDE, ONE_AT_EDGE):
            cells = detect_field(_field(stem), params=params).white_cells
            ious += [max(iou(c.box, box) for c in cells) for box in _annotation(stem).wbc]
        return float(np.mean(ious))

    fitted, fixed = mean_iou(Params()), mean_iou(Params(box_weights=()))
    assert fitted >= 0.75 and fitted > fixed


def test_nuclei_whose_cell_boxes_mostly_overlap_are_one_cell():
    # two lobes of one cell further apart than the lobe gap (an eosinophil's, granules between)
    img = Image.new("RGB", (640, 480), (208, 210, 206))
    draw = ImageDraw.Draw(img)
    draw.ellipse((220, 140, 460, 380), fill=(200, 150, 150))
    for x in (240, 370):
        draw.ellipse((x, 200, x + 80, 320), fill=(95, 80, 170))
    grown = {"box_weights": (), "grow_fraction": 1.0}
    assert len(detect_field(img, params=Params(**grown, merge_overlap=1.0)).white_cells) == 2
    (cell,) = detect_field(img, params=Params(**grown)).white_cells
    assert cell.nucleus_box == (240, 200, 450, 320)


def test_cell_cut_by_the_edge_is_flagged_and_inner_cells_are_not():
    cells = detect_field(_field(ONE_AT_EDGE)).white_cells
    edge = [c for c in cells if c.box[2] >= 630 and c.box[3] >= 470]
    inner = [c for c in cells if c not in edge]
    assert len(edge) == 1 and edge[0].touches_edge
    assert inner and not any(c.touches_edge for c in inner)
    assert not any(c.touches_edge for c in detect_field(_field(TWO_INSIDE)).white_cells)


def test_unannotated_white_cell_at_the_edge_is_found_and_flagged():
    cells = detect_field(_field(UNANNOTATED_EDGE)).white_cells
    assert len(cells) == 1 and cells[0].touches_edge and cells[0].box[1] == 0


def test_red_cell_count_of_a_synthetic_field_is_exact_within_one():
    for n in (0, 4, 10):
        assert abs(detect_field(_synthetic_field(n)).rbc_count - n) <= 1


@pytest.mark.parametrize("stem", [TWO_INSIDE, ONE_AT_EDGE, UNANNOTATED_EDGE])
def test_red_cell_count_is_at_least_the_annotated_cells(stem):
    # BCCD annotators skip many red cells (cut by the edge, overlapping: BloodImage_00133 has 9
    # boxes for about 20 cells), so the annotation is only a lower bound; splitting is checked on
    # synthetic fields, where the count is known.
    annotated = _annotation(stem).rbc
    assert detect_field(_field(stem)).rbc_count >= annotated * 0.9


def test_blank_image_yields_a_field_without_cells():
    for colour in ((255, 255, 255), (210, 210, 205), (0, 0, 0)):
        found = detect_field(Image.new("RGB", (640, 480), colour))
        assert found.white_cells == () and found.rbc_count == 0 and found.platelet_count == 0


def test_synthetic_white_cell_is_found_with_a_box_around_the_cell():
    (cell,) = detect_field(_synthetic_field(4)).white_cells
    assert iou(cell.box, (250, 170, 450, 370)) >= 0.5 and not cell.touches_edge


def test_any_image_mode_is_accepted():
    field = _field(TWO_INSIDE)
    for mode in ("L", "RGBA", "P", "CMYK"):
        detect_field(field.convert(mode))  # no error; grey fields simply have no stain contrast
    assert len(detect_field(field.convert("RGBA")).white_cells) == 2


def test_crop_looks_like_a_bloodcells_crop_centred_on_the_cell():
    field = _field(ONE_AT_EDGE)
    for cell in detect_field(field).white_cells:
        crop = crop_cell(field, cell.box)
        assert crop.size == (320, 240)
        prepared = prepare(crop, method=CELL_CROP)
        assert prepared.cell_found
        left, top, right, bottom = prepared.box
        # the classifier's own nucleus finder lands on this cell: the centre of its crop, mapped
        # back to the field (the crop is a 640x480 window around the cell, halved), is in the box
        cx = (left + right) + (cell.box[0] + cell.box[2]) / 2 - 320
        cy = (top + bottom) + (cell.box[1] + cell.box[3]) / 2 - 240
        assert cell.box[0] <= cx <= cell.box[2] and cell.box[1] <= cy <= cell.box[3]


def test_crop_rejects_an_empty_box():
    with pytest.raises(ValueError, match="empty box"):
        crop_cell(_field(TWO_INSIDE), (10, 10, 10, 50))


@pytest.mark.parametrize("path", sorted((FIXTURES / "cells").glob("*/*.jpeg"))[:4] + sorted(
    (FIXTURES / "pbc").glob("*/*.jpg"))[:2])
def test_single_cell_images_are_not_fields(path):
    is_field, reason = looks_like_field(Image.open(path))
    assert not is_field and reason.startswith("single cell")


def test_close_up_of_one_cell_at_field_size_is_not_a_field():
    field = _field(TWO_INSIDE)
    close_up = field.crop((20, 220, 220, 420)).resize((700, 700))
    is_field, reason = looks_like_field(close_up)
    assert not is_field and "covers" in reason


@pytest.mark.parametrize("stem", [TWO_INSIDE, ONE_AT_EDGE, UNANNOTATED_EDGE])
def test_fixture_fields_are_fields(stem):
    decision = looks_like_field(_field(stem))
    assert decision.is_field and decision.reason.startswith("field")


def test_upload_of_a_field_returns_one_crop_per_white_cell_and_a_cell_upload_none():
    upload = analyse_upload((FIELDS / f"{TWO_INSIDE}.jpg").read_bytes())
    assert upload.decision.is_field and len(upload.crops) == len(upload.field.white_cells) == 2
    cell = analyse_upload(next((FIXTURES / "cells").glob("*/*.jpeg")))
    assert not cell.decision.is_field and cell.field is None and cell.crops == ()


def test_field_without_white_cells_is_kept():
    upload = analyse_upload(_synthetic_field(6, white_cell=False))
    assert upload.decision.is_field and upload.field.white_cells == () and upload.field.rbc_count >= 5


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"this is not an image", "not a readable image"),
        (io.BytesIO(b"\x89PNG\r\n\x1a\n broken"), "not a readable image"),
        (12345, "expected an image"),
        (Image.new("RGB", (20, 640)), "too small"),
    ],
)
def test_garbage_input_gives_a_clear_error(source, message):
    with pytest.raises(FieldImageError, match=message):
        detect_field(source)
    with pytest.raises(ValueError, match=message):
        looks_like_field(source)


def test_float_and_16_bit_fields_are_analysed_like_8_bit():
    arr = np.asarray(_field(ONE_AT_EDGE).convert("L"), np.uint16) * 257
    detect_field(Image.fromarray(arr))  # no error
