"""The refusals every service raises, each with one meaning and one status code.

``NotAllowed`` (403): the acting user's role or relation to the record does not allow the action.
``InvalidState`` (409): the record's current state does not allow it (a signed sample is locked,
an image is not classified yet, a status change the state machine refuses).
A wrong value is a Django ``ValidationError`` keyed by field (400), which forms and serializers show.
The API maps them in ``api.exceptions``, the pages in ``cases.middleware.ServiceErrorMiddleware``.
"""
from __future__ import annotations

from .models import Sample, SampleStatus


class NotAllowed(Exception):
    """The acting user's role or relation to the record does not allow this action (403)."""


class InvalidState(Exception):
    """The record's current state does not allow this change (409)."""


class InvalidTransition(InvalidState):
    """A sample status change that ``cases.models.ALLOWED_TRANSITIONS`` does not allow."""

    def __init__(self, sample: Sample, to_status: str):
        self.from_status = sample.status
        self.to_status = to_status
        super().__init__(
            f"Sample {sample.accession_number} cannot go from "
            f"'{SampleStatus(sample.status).label}' to '{SampleStatus(to_status).label}'."
        )
