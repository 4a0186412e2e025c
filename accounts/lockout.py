"""django-axes handler whose counting is ``accounts.selectors.login_locked``.

Stock axes with ``AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]`` applies one limit to
both counts, and a successful sign-in deletes every failure matching the username *or* the IP:
a sign-in to one's own account reset the count of every other username tried from that IP.
Here the username and the IP have separate limits (``AXES_FAILURE_LIMIT``,
``HV_LOGIN_IP_FAILURE_LIMIT``) and a success clears only the signed-in username's failures.
"""
from __future__ import annotations

import logging

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_ip_address, get_client_username
from axes.signals import user_locked_out
from django.conf import settings

from . import selectors, services

log = logging.getLogger(__name__)


def request_ip(request) -> str | None:
    """The client IP as the lockout counts it (axes' resolution, so proxies are configured in one place)."""
    return get_client_ip_address(request)


class LockoutHandler(AxesDatabaseHandler):
    def get_failures(self, request, credentials: dict | None = None) -> int:
        by_username, by_ip = selectors.login_failures(
            username=get_client_username(request, credentials), ip_address=request.axes_ip_address
        )
        return max(by_username, by_ip)

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        if not settings.AXES_LOCK_OUT_AT_FAILURE:
            return False
        return selectors.login_locked(
            username=get_client_username(request, credentials), ip_address=request.axes_ip_address
        )

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None:
            log.error("A failed sign-in without a request cannot be counted by the lockout.")
            return
        if self.is_whitelisted(request, credentials):
            return
        username = get_client_username(request, credentials)
        locked = services.login_failure_record(
            username=username,
            ip_address=request.axes_ip_address,
            user_agent=request.axes_user_agent,
            path=request.axes_path_info,
        )
        request.axes_failures_since_start = self.get_failures(request, credentials)
        if locked and settings.AXES_LOCK_OUT_AT_FAILURE:
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send("axes", request=request, username=username, ip_address=request.axes_ip_address)

    def reset_user_attempts(self, request, credentials: dict | None = None) -> int:
        username = get_client_username(request, credentials)
        return services.login_failures_reset(username=username) if username else 0
