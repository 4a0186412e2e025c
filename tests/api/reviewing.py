"""Samples at each step of the doctor's review, built through the services (shared by the API tests)."""
from __future__ import annotations

from review import services as reviews

from ..factories import PASSWORD, make_classified_sample
from . import images as img

# The AI's class per cell; cell 5 is predicted with low confidence ("unidentified").
AI = ["NEUTROPHIL", "NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "NEUTROPHIL"]
UNIDENTIFIED = {5}


def reviewable_sample(technician, *, cells: int = len(AI), wbc_count=None, first_image: int = 0):
    """Classified and awaiting review; ``technician`` uploaded the images."""
    files = [(f"cell{i}.png", img.png(first_image + i)) for i in range(cells)]
    return make_classified_sample(
        technician=technician, files=files, ai_classes=AI[:cells], unidentified=UNIDENTIFIED & set(range(cells)),
        wbc_count=wbc_count,
    )


def review_all(doctor, sample, final=None) -> None:
    """Confirm every cell (the AI's class, or ``final``) through the review service."""
    for i, image in enumerate(sample.images.order_by("pk")):
        reviews.cell_review(actor=doctor, image=image, final_class=(final or AI)[i])


def signed_sample(technician, doctor, **kwargs):
    sample = reviewable_sample(technician, **kwargs)
    review_all(doctor, sample)
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    sample.refresh_from_db()
    return sample
