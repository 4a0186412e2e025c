"""Failed sign-ins are counted per username and, separately, per client IP (issue items 1 and 2)."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.roles import Role

from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


LOGIN = reverse("login")
TOKEN = reverse("api:token")


def _sign_in(client, username, password, ip="10.0.0.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def _locked(response) -> bool:
    return response.status_code == 429 and "locked" in response.content.decode().lower()


def test_sign_in_to_ones_own_account_does_not_reset_another_usernames_failures(client, settings):
    victim = UserFactory(role=Role.DOCTOR)
    attacker = UserFactory(role=Role.TECHNICIAN)
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, victim.username, f"guess-{i}").status_code == 200
    assert _sign_in(client, attacker.username, PASSWORD).status_code == 302  # the attacker's own account
    client.post(reverse("logout"))
    assert _locked(_sign_in(client, victim.username, "one-guess-too-many"))
    assert _locked(_sign_in(client, victim.username, PASSWORD))
    assert _locked(_sign_in(client, victim.username, PASSWORD, ip="10.9.9.9"))  # the username is locked anywhere


def test_one_users_failures_do_not_lock_other_users_behind_the_same_ip(client, settings):
    locked_out = UserFactory(role=Role.TECHNICIAN)
    colleague = UserFactory(role=Role.DOCTOR)
    for i in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, locked_out.username, f"guess-{i}")
    assert _locked(_sign_in(client, locked_out.username, PASSWORD))
    assert _sign_in(client, colleague.username, PASSWORD).status_code == 302


def test_anonymous_failures_below_the_ip_limit_do_not_lock_the_lab(client, settings):
    settings.HV_LOGIN_IP_FAILURE_LIMIT = 12
    user = UserFactory(role=Role.TECHNICIAN)
    for i in range(settings.HV_LOGIN_IP_FAILURE_LIMIT - 1):
        _sign_in(client, f"nobody-{i % 3}", "x")  # each username stays under its own limit too
    assert _sign_in(client, user.username, PASSWORD).status_code == 302


def test_the_ip_is_locked_past_its_own_limit_for_every_username(client, settings):
    settings.HV_LOGIN_IP_FAILURE_LIMIT = 12
    user = UserFactory(role=Role.TECHNICIAN)
    for i in range(settings.HV_LOGIN_IP_FAILURE_LIMIT):
        _sign_in(client, f"nobody-{i}", "x")
    assert _locked(_sign_in(client, user.username, PASSWORD))
    assert _sign_in(client, user.username, PASSWORD, ip="10.9.9.9").status_code == 302  # other IPs are not


def test_a_success_clears_only_that_usernames_failures(client, settings):
    user = UserFactory(role=Role.TECHNICIAN)
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, user.username, f"guess-{i}")
    assert _sign_in(client, user.username, PASSWORD).status_code == 302  # one short of the limit: still in
    client.post(reverse("logout"))
    for i in range(settings.AXES_FAILURE_LIMIT - 1):  # the count started again
        assert _sign_in(client, user.username, f"guess-{i}").status_code == 200
    assert _sign_in(client, user.username, PASSWORD).status_code == 302


def test_page_and_api_share_the_username_count(client, settings):
    user = UserFactory(role=Role.TECHNICIAN)
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, user.username, f"guess-{i}")
    api = APIClient(REMOTE_ADDR="10.1.1.1")
    assert api.post(TOKEN, {"username": user.username, "password": "wrong"}, format="json").status_code == 429
    assert api.post(TOKEN, {"username": user.username, "password": PASSWORD}, format="json").status_code == 429
