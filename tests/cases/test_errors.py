"""A service refusal has one meaning and one status, on the pages as in the API (api.exceptions)."""
import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from cases.errors import InvalidState, InvalidTransition, NotAllowed
from cases.middleware import ServiceErrorMiddleware

from ..factories import SampleFactory

pytestmark = pytest.mark.django_db


def _page_answer(exc, path="/samples/1/"):
    request = RequestFactory().get(path)
    request.user = AnonymousUser()
    return ServiceErrorMiddleware(lambda r: None).process_exception(request, exc)


def test_pages_answer_not_allowed_with_403_and_invalid_state_with_409():
    assert _page_answer(NotAllowed("Your role does not allow this action.")).status_code == 403
    refused = _page_answer(InvalidState("The sample is signed and locked."))
    assert refused.status_code == 409 and b"signed and locked" in refused.content


def test_an_invalid_transition_is_an_invalid_state():
    sample = SampleFactory()
    assert _page_answer(InvalidTransition(sample, "signed")).status_code == 409


def test_api_errors_and_other_exceptions_are_left_to_their_handlers():
    assert _page_answer(NotAllowed("x"), path="/api/v1/samples/") is None
    assert _page_answer(ValueError("x")) is None
