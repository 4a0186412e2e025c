import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.roles import Role

from ..factories import UserFactory

ROLES = ("anonymous", Role.TECHNICIAN.value, Role.DOCTOR.value, Role.ADMIN.value)



@pytest.fixture
def api():
    return APIClient()


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def client_for(db):
    """``client_for("technician")`` → an APIClient signed in with a token of a new user of that role."""

    def make(role: str) -> APIClient:
        if role == "anonymous":
            return APIClient()
        return token_client(UserFactory(role=role))

    return make


@pytest.fixture
def tech_api(technician):
    return token_client(technician)


@pytest.fixture
def doctor_api(doctor):
    return token_client(doctor)


@pytest.fixture
def admin_api(admin_user):
    return token_client(admin_user)
