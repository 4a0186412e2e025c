"""Signing passwords are counted like sign-ins, with one answer for every refusal (issue item 3)."""
import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.roles import Role
from cases.models import SampleStatus
from review import selectors as rs
from review.models import Signature

from ..api.reviewing import review_all, reviewable_sample
from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db



@pytest.fixture
def reviewed(technician, doctor):
    sample = reviewable_sample(technician, cells=2)
    review_all(doctor, sample)
    return sample


def _page_sign(client, sample, password):
    shown = rs.result_sha256(rs.result_snapshot(sample=sample))  # what the review page sends with the password
    response = client.post(reverse("sample-sign", args=[sample.pk]),
                           {"password": password, "meaning": "reviewed_and_approved", "result_sha256": shown},
                           REMOTE_ADDR="10.0.0.7")
    return response.status_code, [str(m) for m in response.context["messages"]] if response.context else []


def _api_sign(client, sample, password):
    response = client.post(reverse("api:sample-sign", args=[sample.pk]),
                           {"password": password, "meaning": "reviewed_and_approved"}, format="json")
    return response.status_code, response.json()


def test_page_signing_passwords_lock_out_like_sign_ins(client, doctor, reviewed, settings):
    client.force_login(doctor)
    answers = {_page_sign(client, reviewed, f"guess-{i}")[1][0] for i in range(settings.AXES_FAILURE_LIMIT)}
    status, messages = _page_sign(client, reviewed, PASSWORD)  # locked: the right password is refused too
    assert status == 400 and answers == set(messages) and "password is not correct" in messages[0]
    reviewed.refresh_from_db()
    assert reviewed.status == SampleStatus.AWAITING_REVIEW and not Signature.objects.exists()
    # The same counters as sign-in: the doctor's username is locked on the login page as well.
    response = Client().post(reverse("login"), {"username": doctor.username, "password": PASSWORD})
    assert response.status_code == 429


def test_api_signing_when_locked_answers_like_a_wrong_password(doctor, reviewed, settings):
    api = APIClient(REMOTE_ADDR="10.0.0.8")
    api.force_authenticate(doctor)
    wrong = [_api_sign(api, reviewed, f"guess-{i}") for i in range(settings.AXES_FAILURE_LIMIT)]
    assert _api_sign(api, reviewed, PASSWORD) == wrong[-1] == wrong[0]
    assert wrong[0][0] == 400 and not Signature.objects.exists()


def test_sign_in_failures_count_against_signing(client, doctor, reviewed, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": doctor.username, "password": f"guess-{i}"})
    api = APIClient()
    api.force_authenticate(doctor)
    status, body = _api_sign(api, reviewed, PASSWORD)
    assert status == 400 and "password is not correct" in body["detail"] and not Signature.objects.exists()


def test_a_sample_that_cannot_be_signed_answers_the_same_whatever_the_password(client, doctor, technician):
    unreviewed = reviewable_sample(technician, cells=2)
    client.force_login(doctor)
    assert _page_sign(client, unreviewed, PASSWORD) == _page_sign(client, unreviewed, "not-my-password")
    api = APIClient()
    api.force_authenticate(doctor)
    right, wrong = _api_sign(api, unreviewed, PASSWORD), _api_sign(api, unreviewed, "not-my-password")
    assert right == wrong and right[0] == 409


def test_the_right_password_still_signs_and_another_doctor_is_not_locked(client, doctor, reviewed, settings):
    colleague = UserFactory(role=Role.DOCTOR)
    client.force_login(doctor)
    for i in range(settings.AXES_FAILURE_LIMIT):
        _page_sign(client, reviewed, f"guess-{i}")
    api = APIClient(REMOTE_ADDR="10.0.0.7")  # same IP as the locked doctor's attempts
    api.force_authenticate(colleague)
    assert _api_sign(api, reviewed, PASSWORD)[0] == 201
