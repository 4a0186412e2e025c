"""Samples with whole fields at a given step, built through the services without the detector or
the model (shared by the access-matrix tests)."""
from __future__ import annotations

from cases.models import CellImage, ImageStatus, SampleStatus, UploadKind
from cases.services import CellCut, field_detection_store, image_set_status, images_upload, sample_transition
from review import services as reviews

from ..factories import ModelVersionFactory, PredictionFactory, SampleFactory, image_bytes


def uploaded_field(technician, sample=None, *, shade: int = 0):
    """A 640x480 field, uploaded as a field and waiting for the detector."""
    sample = sample or SampleFactory()
    data = image_bytes("PNG", size=(640, 480), color=(200, 190 - shade, 200))
    return images_upload(actor=technician, sample=sample, files=[("field.png", data)], kind=UploadKind.FIELD).fields[0]


def reviewable_field(technician, *, shade: int = 0, doctor=None):
    """A field with two detected cells, classified; the sample awaits review. With ``doctor``, the
    second cell is rejected by that doctor."""
    field = uploaded_field(technician, shade=shade)
    def crop(red):
        return image_bytes(size=(320, 240), color=(red, 80, shade))

    cuts = [
        CellCut(box=(40, 40, 140, 140), touches_edge=False, content=crop(90)),
        CellCut(box=(0, 300, 90, 400), touches_edge=True, content=crop(91)),
    ]
    cells = field_detection_store(field=field, detector="test-detector", rbc_count=20, platelet_count=3,
                                  elapsed_ms=1.0, cells=cuts)
    version = ModelVersionFactory(name="test-model", threshold=0.6, is_active=True)
    for cell in cells:
        PredictionFactory(image=cell, model_version=version, predicted_class="NEUTROPHIL", confidence=0.9)
        image_set_status(image=cell, status=ImageStatus.CLASSIFIED)
    sample = field.sample
    sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING)
    sample_transition(sample=sample, to_status=SampleStatus.AWAITING_REVIEW)
    if doctor is not None:
        reviews.field_cell_reject(actor=doctor, image=CellImage.objects.get(pk=cells[1].pk), reason="matrix")
    field.refresh_from_db()
    return field
