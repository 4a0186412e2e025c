"""The Grad-CAM heatmap download, through the one audited download helper (``cases.downloads``)."""
from __future__ import annotations

from django.http import FileResponse, Http404, HttpResponse

from cases.downloads import patient_data_response

from .models import Prediction


def heatmap_response(*, actor, prediction: Prediction | None) -> HttpResponse | FileResponse:
    """A prediction's Grad-CAM heatmap (a PNG the server drew); 404 while there is none."""
    if prediction is None or not prediction.heatmap:
        raise Http404("No heatmap for this image.")
    return patient_data_response(
        actor=actor, subject=prediction, what=f"heatmap of image {prediction.image_id}",
        fieldfile=prediction.heatmap, content_type="image/png", filename=f"heatmap-{prediction.image_id}.png",
        as_attachment=False,
    )
