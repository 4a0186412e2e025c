"""What the classifier hears from the case records: new images to queue, new fields to detect,
and uploads whose kind (field or single cell) it is asked to decide."""
from django.dispatch import receiver

from cases.signals import fields_added, images_added, upload_kind_requested

from .fields import enqueue_detection, upload_kind
from .services import enqueue_classification


@receiver(images_added, dispatch_uid="hv-classify-new-images")
def _queue_new_images(sender, image_ids, **kwargs):
    enqueue_classification(image_ids=image_ids)


@receiver(fields_added, dispatch_uid="hv-detect-new-fields")
def _queue_new_fields(sender, field_ids, **kwargs):
    enqueue_detection(field_ids=field_ids)


@receiver(upload_kind_requested, dispatch_uid="hv-decide-upload-kind")
def _decide_upload_kind(sender, data, **kwargs):
    return upload_kind(data=data)
