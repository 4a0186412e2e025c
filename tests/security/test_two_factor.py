"""Two-factor sign-in: TOTP and single-use recovery codes, required for doctors and admins under
HV_REQUIRE_2FA (issue item 5)."""
import re

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from rest_framework.test import APIClient

from accounts import services
from accounts.roles import Role

from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
LOGIN_CODE = reverse("login-two-factor")
ENROL = reverse("two-factor")
WORKLIST = reverse("worklist")
TOKEN = reverse("api:token")



@pytest.fixture
def required(settings):
    settings.HV_REQUIRE_2FA = True


def _code(device, steps_ahead: int = 0) -> str:
    """The authenticator's code; a step ahead (within the device's tolerance) once the current one was used."""
    code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift + steps_ahead)
    return f"{code:0{device.digits}d}"


def _enrol(user):
    """Enrolment through the services, as the enrolment page does; returns the device and the recovery codes."""
    device = services.two_factor_enrolment_start(user=user)
    return services.two_factor_enrolment_confirm(user=user, token=_code(device))


def _password_step(client, user):
    response = client.post(LOGIN, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return response


def test_doctor_without_2fa_is_sent_to_enrolment_and_cannot_reach_doctor_pages(client, required):
    doctor = UserFactory(role=Role.DOCTOR)
    _password_step(client, doctor)
    response = client.get(WORKLIST)
    assert response.status_code == 302 and response["Location"] == ENROL
    assert client.get(reverse("api:worklist")).status_code == 403  # the session API too
    page = client.get(ENROL)
    assert page.status_code == 200 and "otpauth://totp/" in page.content.decode()
    api = APIClient().post(TOKEN, {"username": doctor.username, "password": PASSWORD}, format="json")
    assert api.status_code == 403 and "token" not in api.json()


def test_technician_is_not_required_to_enrol(client, required):
    technician = UserFactory(role=Role.TECHNICIAN)
    _password_step(client, technician)
    assert client.get(reverse("patient-list")).status_code == 200


def test_enrolment_shows_the_secret_then_recovery_codes_once(client, required):
    doctor = UserFactory(role=Role.DOCTOR)
    _password_step(client, doctor)
    page = client.get(ENROL).content.decode()
    secret = re.search(r'class="otp-secret">([A-Z2-7]+)<', page).group(1)
    device = services.two_factor_enrolment_start(user=doctor)  # the device the page shows
    assert secret in device.config_url
    assert client.post(ENROL, {"otp": "000000" if _code(device) != "000000" else "111111"}).status_code == 400
    done = client.post(ENROL, {"otp": _code(device)})
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", done.content.decode())
    assert done.status_code == 200 and len(codes) == services.RECOVERY_CODE_COUNT
    assert set(codes) == set(StaticToken.objects.filter(device__user=doctor).values_list("token", flat=True))
    assert client.get(WORKLIST).status_code == 200  # this session passed the second factor at enrolment
    again = client.get(ENROL).content.decode()
    assert not any(code in again for code in codes) and "otpauth" not in again


def test_sign_in_with_a_valid_totp(client, required):
    doctor = UserFactory(role=Role.DOCTOR)
    device, _ = _enrol(doctor)
    response = client.post(LOGIN, {"username": doctor.username, "password": PASSWORD, "next": WORKLIST})
    assert response.status_code == 302 and response["Location"] == LOGIN_CODE
    assert client.get(WORKLIST)["Location"].startswith(LOGIN)  # not signed in before the code
    response = client.post(LOGIN_CODE, {"otp": _code(device, steps_ahead=1)})
    assert response.status_code == 302 and response["Location"] == WORKLIST
    assert client.get(WORKLIST).status_code == 200


def test_a_wrong_totp_fails_and_counts_as_a_failed_sign_in(client, settings):
    doctor = UserFactory(role=Role.DOCTOR)
    device, _ = _enrol(doctor)
    _password_step(client, doctor)
    response = client.post(LOGIN_CODE, {"otp": "12345x"})
    assert response.status_code == 200 and "not valid" in response.content.decode()
    assert AccessAttempt.objects.get(username=doctor.username).failures_since_start == 1
    for _ in range(settings.AXES_FAILURE_LIMIT - 2):
        client.post(LOGIN_CODE, {"otp": "12345x"})
    assert client.post(LOGIN_CODE, {"otp": "12345x"}).status_code == 429  # the limit: locked
    assert Client().post(LOGIN, {"username": doctor.username, "password": PASSWORD}).status_code == 429
    assert client.get(WORKLIST).status_code == 302


def test_a_recovery_code_works_once(client):
    doctor = UserFactory(role=Role.DOCTOR)
    _, codes = _enrol(doctor)
    _password_step(client, doctor)
    assert client.post(LOGIN_CODE, {"otp": codes[0].upper()}).status_code == 302
    assert client.get(WORKLIST).status_code == 200
    client.post(reverse("logout"))
    _password_step(client, doctor)
    assert client.post(LOGIN_CODE, {"otp": codes[0]}).status_code == 200  # used up
    assert client.get(WORKLIST).status_code == 302


def test_api_token_needs_the_code_of_an_enrolled_user(required):
    doctor = UserFactory(role=Role.DOCTOR)
    device, _ = _enrol(doctor)
    api = APIClient()
    without = api.post(TOKEN, {"username": doctor.username, "password": PASSWORD}, format="json")
    wrong_password = api.post(TOKEN, {"username": doctor.username, "password": "nope"}, format="json")
    assert without.status_code == wrong_password.status_code == 400 and without.json() == wrong_password.json()
    assert AccessAttempt.objects.get(username=doctor.username).failures_since_start == 2
    ok = api.post(TOKEN, {"username": doctor.username, "password": PASSWORD, "otp": _code(device, 1)}, format="json")
    assert ok.status_code == 200 and ok.json()["token"]
    assert not AccessAttempt.objects.filter(username=doctor.username).exists()  # a success clears the count
    wrong = api.post(TOKEN, {"username": doctor.username, "password": PASSWORD, "otp": "000000x"}, format="json")
    assert wrong.status_code == 400 and wrong.json() == without.json()
    assert AccessAttempt.objects.get(username=doctor.username).failures_since_start == 1


def test_an_unverified_session_of_an_enrolled_user_is_signed_out(client):
    doctor = UserFactory(role=Role.DOCTOR)
    _enrol(doctor)
    client.force_login(doctor)  # a session that skipped the second step
    response = client.get(WORKLIST)
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert client.get(WORKLIST)["Location"].startswith(LOGIN)
