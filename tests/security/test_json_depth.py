"""JSON nested deeper than Python's parser can follow is a 400 with a clear message, never a 500."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from api.parsers import TOO_DEEP, JSONParser
from review.models import CellReview

from ..api.conftest import token_client
from ..api.reviewing import reviewable_sample

pytestmark = pytest.mark.django_db

DEPTH = 50_000
NESTED_LIST = "[" * DEPTH + "]" * DEPTH
NESTED_OBJECT = '{"final_class": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}"


@pytest.fixture
def image(technician):
    return reviewable_sample(technician, cells=1).images.get()


@pytest.mark.parametrize("body", [NESTED_LIST, NESTED_OBJECT], ids=["list", "object"])
def test_api_refuses_deep_json_with_400(body, doctor, image):
    url = reverse("api:cell-review", args=[image.sample_id, image.pk])
    response = token_client(doctor).post(url, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON parse error - {TOO_DEEP}"}
    assert not CellReview.objects.exists()


def test_api_sign_in_refuses_deep_json_with_400(db):
    response = Client().post(reverse("api:token"), data=NESTED_LIST, content_type="application/json")
    assert response.status_code == 400
    assert TOO_DEEP in response.json()["detail"]


def test_ordinary_json_still_parses(doctor, image):
    url = reverse("api:cell-review", args=[image.sample_id, image.pk])
    body = '{"final_class": "NEUTROPHIL", "comment": "[[1]]"}'
    response = token_client(doctor).post(url, data=body, content_type="application/json")
    assert response.status_code == 200
    assert CellReview.objects.get().final_class == "NEUTROPHIL"
    assert "json" in JSONParser.media_type
