"""Writes of the classifier app: queueing images, storing predictions, the model registry."""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _send_to_broker(image_ids: list[int]) -> None:
    from .tasks import classify_images

    classify_images.delay(list(image_ids))


def enqueue_classification(*, image_ids: list[int]) -> None:
    """Send images to the workers. Called from ``transaction.on_commit``.

    If the broker is unreachable the images stay 'queued' in the database and the
    periodic sweeper sends them again: an accepted upload is never lost.
    """
    try:
        _send_to_broker(image_ids)
    except Exception:  # broker down: the sweeper re-enqueues later
        logger.exception("Could not enqueue images %s; the sweeper will retry", image_ids)
