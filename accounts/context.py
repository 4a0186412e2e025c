"""Who is acting: the user, client IP and reason of the current request or service call.

The request middleware (``audit.middleware``) and services (``acting``) set it; the audit
trail reads it, so a row written by a model signal still names the user who caused it.
Kept here, at the bottom of the app layers, so that the user services can say who acts
without depending on the audit app.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

actor_var: contextvars.ContextVar = contextvars.ContextVar("hv_actor", default=None)
ip_var: contextvars.ContextVar = contextvars.ContextVar("hv_actor_ip", default=None)
reason_var: contextvars.ContextVar = contextvars.ContextVar("hv_actor_reason", default="")


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


@contextmanager
def acting(*, actor=None, ip: str | None = None, reason: str | None = None):
    """Set who is acting (and why) for the audit rows written inside the block."""
    tokens = []
    if actor is not None:
        tokens.append((actor_var, actor_var.set(actor)))
    if ip is not None:
        tokens.append((ip_var, ip_var.set(ip)))
    if reason is not None:
        tokens.append((reason_var, reason_var.set(reason)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_actor():
    return actor_var.get()
