"""Rate limits of the API (per user when signed in, else per client IP).

Scopes: ``api-login`` (token sign-in, on top of django-axes' lockout), ``api-upload`` and
``api-sign`` (electronic signature: it re-checks the doctor's password, per user).
Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` when set there, else the
defaults below. The counters live in the default cache: use a shared cache (Redis) when
several web processes serve the API.
"""
from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

DEFAULT_RATES = {
    "api-login": "10/min",
    "api-upload": "60/min",
    "api-sign": "10/min",
}


class HVScopedRateThrottle(ScopedRateThrottle):
    THROTTLE_RATES = {**DEFAULT_RATES, **(api_settings.DEFAULT_THROTTLE_RATES or {})}
