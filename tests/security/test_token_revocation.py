"""API tokens die with a password change, a web sign-out and the next sign-in (issue item 4)."""
import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.roles import Role

from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = reverse("api:token")
PATIENTS = reverse("api:patient-list")



@pytest.fixture
def user(db):
    return UserFactory(role=Role.TECHNICIAN)


def _token_client(user) -> APIClient:
    response = APIClient().post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get(PATIENTS).status_code == 200
    return client


def test_password_change_revokes_the_token(user):
    api = _token_client(user)
    user.set_password("a-new-long-password-7")
    user.save()
    assert api.get(PATIENTS).status_code == 401


def test_web_sign_out_revokes_the_token(user):
    api = _token_client(user)
    web = Client()
    assert web.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    assert api.get(PATIENTS).status_code == 200  # a web sign-in alone leaves it
    web.post(reverse("logout"))
    assert api.get(PATIENTS).status_code == 401


def test_each_sign_in_issues_a_new_token(user):
    first = _token_client(user)
    second = _token_client(user)
    assert first.get(PATIENTS).status_code == 401 and second.get(PATIENTS).status_code == 200


def test_saving_the_user_without_a_new_password_keeps_the_token(user):
    api = _token_client(user)
    user.first_name = "Renamed"
    user.save()
    assert api.get(PATIENTS).status_code == 200
