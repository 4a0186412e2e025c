"""API error responses: service exceptions mapped to 4xx, never a stack trace to the user.

``NotAllowed`` → 403, ``InvalidState`` → 409 (``InvalidTransition`` with the two statuses),
``ValueError`` / Django ``ValidationError`` → 400 (keyed by field), a database integrity conflict
→ 409; any other exception is logged and answered with a JSON 500 without details. Every error
response rolls the request's transaction back. The pages map the same errors in
``cases.middleware.ServiceErrorMiddleware``.
"""
from __future__ import annotations

import logging

from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from cases.errors import InvalidState, InvalidTransition, NotAllowed

logger = logging.getLogger("api")


SERVER_ERROR_DETAIL = "Internal server error. The error was logged; please try again or contact support."


def _django_validation_messages(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()}
    return {"detail": " ".join(exc.messages)}


def api_exception_handler(exc, context):
    response = exception_handler(exc, context)  # APIException, Http404, PermissionDenied
    if response is not None:
        return response
    if isinstance(exc, NotAllowed):
        body, code = {"detail": str(exc) or "Your role does not allow this action."}, status.HTTP_403_FORBIDDEN
    elif isinstance(exc, InvalidTransition):
        body = {"detail": str(exc), "from_status": exc.from_status, "to_status": exc.to_status}
        code = status.HTTP_409_CONFLICT
    elif isinstance(exc, InvalidState):
        body, code = {"detail": str(exc)}, status.HTTP_409_CONFLICT
    elif isinstance(exc, DjangoValidationError):
        body, code = _django_validation_messages(exc), status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, ValueError):
        body, code = {"detail": str(exc)}, status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, IntegrityError):
        logger.warning("Integrity conflict in %s: %s", _view_name(context), exc)
        body = {"detail": "The request conflicts with an existing record."}
        code = status.HTTP_409_CONFLICT
    elif isinstance(exc, SuspiciousOperation):  # e.g. too many files in one request
        logger.warning("Suspicious request to %s: %s", _view_name(context), exc)
        body, code = {"detail": "The request was refused as malformed or too large."}, status.HTTP_400_BAD_REQUEST
    else:
        logger.error("Unhandled error in %s", _view_name(context), exc_info=exc)
        body, code = {"detail": SERVER_ERROR_DETAIL}, status.HTTP_500_INTERNAL_SERVER_ERROR
    set_rollback()
    return Response(body, status=code)


def _view_name(context) -> str:
    view = context.get("view") if context else None
    return type(view).__name__ if view is not None else "API"


def server_error(request, *args, **kwargs):
    """``handler500`` for the project: JSON without details under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": SERVER_ERROR_DETAIL}, status=500)
    return defaults.server_error(request, *args, **kwargs)

