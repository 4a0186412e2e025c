"""Token authentication whose tokens expire.

DRF's stock tokens live until revoked. A lab API token is a password-equivalent, so here it
stops working ``HV_API_TOKEN_TTL_HOURS`` after it was issued: the client gets 401 and signs in
again (audited), and that sign-in replaces the token with a new one (every sign-in does). (The
refused request's transaction is rolled back, so the token row is not deleted here.) Tokens are
also revoked when the password changes and at sign-out (``api.signals``).
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


def token_lifetime() -> datetime.timedelta:
    return datetime.timedelta(hours=settings.HV_API_TOKEN_TTL_HOURS)


def token_expires_at(token) -> datetime.datetime:
    return token.created + token_lifetime()


def token_expired(token) -> bool:
    return timezone.now() >= token_expires_at(token)


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("Token expired: sign in again to get a new one.")
        return user, token
