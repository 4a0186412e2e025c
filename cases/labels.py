"""Sample labels: the accession number as a Code 128 barcode (python-barcode), as a PNG image
and as a printable PDF label (62 × 29 mm, the common roll of label printers) with the patient's
name, MRN and date of birth, the accession number and the collection time.

Both are served through ``cases.downloads.patient_data_response`` (audited) like any patient data.
"""
from __future__ import annotations

import io

from barcode import Code128
from barcode.writer import ImageWriter
from django.utils import timezone
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from .models import Sample

LABEL_WIDTH, LABEL_HEIGHT = 62 * mm, 29 * mm
MARGIN = 2 * mm
BARCODE_HEIGHT = 10 * mm
QUIET_MODULES = 10  # Code 128's quiet zone, in modules


def barcode_modules(value: str) -> str:
    """The Code 128 symbol of ``value`` as modules, "1" a bar and "0" a space (start, data,
    checksum and stop; no quiet zone)."""
    return "".join(Code128(value).build())


def barcode_png(value: str) -> bytes:
    """``value`` as a Code 128 PNG (300 dpi) with the number printed under the bars."""
    out = io.BytesIO()
    Code128(value, writer=ImageWriter(format="PNG")).write(
        out,
        options={"module_width": 0.25, "module_height": 12.0, "quiet_zone": 3.0, "font_size": 9,
                 "text_distance": 4.0, "dpi": 300},
    )
    return out.getvalue()


def _fit(c: canvas.Canvas, text: str, font: str, size: float, width: float) -> str:
    while text and c.stringWidth(text, font, size) > width:
        text = text[:-2] + "…"
    return text


def sample_label_pdf(sample: Sample) -> bytes:
    """One 62 × 29 mm label of ``sample``: patient, barcode of the accession number, collected."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(LABEL_WIDTH, LABEL_HEIGHT), pageCompression=1)
    c.setTitle(f"Label {sample.accession_number}")
    c.setAuthor("HematoVision")
    usable = LABEL_WIDTH - 2 * MARGIN
    patient = sample.patient
    top = LABEL_HEIGHT - MARGIN
    c.setFont("Helvetica-Bold", 7.5)
    c.drawString(MARGIN, top - 7, _fit(c, patient.full_name, "Helvetica-Bold", 7.5, usable))
    c.setFont("Helvetica", 6)
    c.drawString(MARGIN, top - 14, _fit(c, f"MRN {patient.mrn} · born {patient.date_of_birth:%Y-%m-%d}",
                                        "Helvetica", 6, usable))

    modules = barcode_modules(sample.accession_number)
    module = usable / (len(modules) + 2 * QUIET_MODULES)  # a scanner needs the quiet zone either side
    bottom = MARGIN + 9
    c.setFillColorRGB(0, 0, 0)
    x = MARGIN + QUIET_MODULES * module
    run_start = None
    for i, bit in enumerate(modules + "0"):
        if bit == "1" and run_start is None:
            run_start = i
        elif bit == "0" and run_start is not None:
            c.rect(x + run_start * module, bottom, (i - run_start) * module, BARCODE_HEIGHT, stroke=0, fill=1)
            run_start = None

    c.setFont("Helvetica-Bold", 7.5)
    c.drawString(MARGIN, MARGIN + 1, sample.accession_number)
    c.setFont("Helvetica", 6)
    collected = f"coll. {timezone.localtime(sample.collected_at):%Y-%m-%d %H:%M}"
    c.drawRightString(LABEL_WIDTH - MARGIN, MARGIN + 1, collected)
    c.showPage()
    c.save()
    return out.getvalue()
