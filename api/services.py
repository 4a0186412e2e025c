"""Writes of the API's own state: sign-in tokens."""
from __future__ import annotations

from rest_framework.authtoken.models import Token


def api_token_issue(*, user) -> Token:
    """A new token for every sign-in; the user's previous token stops working."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def api_tokens_revoke(*, user) -> int:
    """Sign the user out of the API: their token stops working (password change, sign-out, revoke)."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted
