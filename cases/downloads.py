"""Downloads of patient data (cell images, heatmaps, PDF reports, FHIR exports): the one way out.

The pages and the API answer every download through ``patient_data_response``, so that both give
the same answer: the content type is what the server decoded or generated (never guessed from a
user's file name), the file name is generated, nothing is cached, the browser may neither sniff
nor run the content, a file missing from storage is a 404, and each download is audited.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse
from django.utils.http import content_disposition_header

from .audit import AuditAction, record_event
from .reports import fhir_diagnostic_report, render_pdf
from .validation import FORMAT_EXTENSIONS, FORMAT_MEDIA_TYPES

if TYPE_CHECKING:
    from classifier.models import Prediction

    from .models import CellImage, Sample, Signature

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


def heatmap_response(*, actor, prediction: Prediction) -> HttpResponse | FileResponse:
    """A prediction's Grad-CAM heatmap (a PNG the server drew)."""
    return patient_data_response(
        actor=actor, subject=prediction, what=f"heatmap of image {prediction.image_id}",
        fieldfile=prediction.heatmap, content_type="image/png", filename=f"heatmap-{prediction.image_id}.png",
        as_attachment=False,
    )


def report_pdf_response(*, actor, sample: Sample, signature: Signature) -> HttpResponse:
    """The PDF report of ``signature`` (a signed version of ``sample``)."""
    return patient_data_response(
        actor=actor, subject=sample, what=f"PDF report v{signature.version}",
        content=render_pdf(sample=sample, signature=signature), content_type="application/pdf",
        filename=f"{sample.accession_number}-v{signature.version}.pdf", as_attachment=True,
    )


def fhir_response(*, actor, sample: Sample, signature: Signature) -> HttpResponse:
    """The FHIR R4 Bundle of ``signature`` (a signed version of ``sample``)."""
    bundle = fhir_diagnostic_report(sample=sample, signature=signature)
    return patient_data_response(
        actor=actor, subject=sample, what=f"FHIR export v{signature.version}",
        content=DjangoJSONEncoder().encode(bundle).encode(), content_type="application/fhir+json",
        filename=f"{sample.accession_number}-v{signature.version}.fhir.json", as_attachment=True,
    )
