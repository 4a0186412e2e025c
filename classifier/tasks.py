from celery import shared_task


@shared_task(name="classifier.classify_images")
def classify_images(image_ids: list[int]) -> None:
    """Placeholder until the classification worker lands (issue 4)."""
    return None
