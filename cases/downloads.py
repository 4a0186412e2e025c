"""Downloads of patient data (cell images, heatmaps, PDF reports, FHIR exports): the one way out.

The pages and the API answer every download through ``patient_data_response`` (images here,
heatmaps in ``classifier.downloads``, reports in ``review.reports``), so that both give
the same answer: the content type is what the server decoded or generated (never guessed from a
user's file name), the file name is generated, nothing is cached, the browser may neither sniff
nor run the content, a file missing from storage is a 404, and each download is audited.
"""
from __future__ import annotations

from django.db import models
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse
from django.utils.http import content_disposition_header

from audit.services import AuditAction, record_event

from . import labels
from .models import CellImage, Field, Sample
from .validation import FORMAT_EXTENSIONS, FORMAT_MEDIA_TYPES

# Even if a browser rendered a downloaded file as a document, it would run nothing and load nothing
# (stricter than the site's policy, which the CSP middleware leaves alone when this one is set).
DOWNLOAD_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
MISSING_FILE = "The file is missing from storage."


def patient_data_response(
    *,
    actor,
    subject: models.Model,
    what: str,
    content_type: str,
    filename: str,
    as_attachment: bool,
    fieldfile: FieldFile | None = None,
    content: bytes | None = None,
) -> HttpResponse | FileResponse:
    """Stream ``fieldfile`` (or send ``content``) as a download of ``subject`` by ``actor``, audited.

    Raises ``Http404`` when the file is not in storage; then nothing is audited.
    """
    if (fieldfile is None) == (content is None):
        raise TypeError("Pass exactly one of fieldfile and content.")
    if fieldfile is not None:
        if not fieldfile:
            raise Http404(MISSING_FILE)
        try:
            handle = fieldfile.open("rb")
        except FileNotFoundError:
            raise Http404(MISSING_FILE) from None
        response = FileResponse(handle, content_type=content_type)
    else:
        response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment, filename)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    record_event(action=AuditAction.DOWNLOAD, actor=actor, obj=subject, reason=f"{what} downloaded")
    return response


def image_file_response(*, actor, image: CellImage) -> HttpResponse | FileResponse:
    """The uploaded cell image, typed by the format it decoded as at upload."""
    content_type = FORMAT_MEDIA_TYPES.get(image.image_format)
    extension = FORMAT_EXTENSIONS.get(image.image_format, ".bin")
    return patient_data_response(
        actor=actor, subject=image, what="image file", fieldfile=image.file,
        content_type=content_type or "application/octet-stream", filename=f"cell-{image.pk}{extension}",
        as_attachment=content_type is None,
    )


def field_file_response(*, actor, field: Field) -> HttpResponse | FileResponse:
    """The uploaded whole field, typed by the format it decoded as at upload."""
    content_type = FORMAT_MEDIA_TYPES.get(field.image_format)
    extension = FORMAT_EXTENSIONS.get(field.image_format, ".bin")
    return patient_data_response(
        actor=actor, subject=field, what="field image", fieldfile=field.file,
        content_type=content_type or "application/octet-stream", filename=f"field-{field.pk}{extension}",
        as_attachment=content_type is None,
    )


def sample_barcode_response(*, actor, sample: Sample) -> HttpResponse:
    """The accession number of ``sample`` as a Code 128 PNG, shown inline (to print or paste)."""
    return patient_data_response(
        actor=actor, subject=sample, what="barcode", content=labels.barcode_png(sample.accession_number),
        content_type="image/png", filename=f"{sample.accession_number}-barcode.png", as_attachment=False,
    )


def sample_label_response(*, actor, sample: Sample) -> HttpResponse:
    """The printable 62 × 29 mm PDF label of ``sample`` (patient, barcode, collection time)."""
    return patient_data_response(
        actor=actor, subject=sample, what="label", content=labels.sample_label_pdf(sample),
        content_type="application/pdf", filename=f"{sample.accession_number}-label.pdf", as_attachment=False,
    )
