from .audit import _actor, _ip, client_ip


class AuditContextMiddleware:
    """Make the signed-in user and client IP available to the audit trail."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        ip_token = _ip.set(client_ip(request))
        user = getattr(request, "user", None)
        actor_token = _actor.set(user if user is not None and user.is_authenticated else None)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(actor_token)
            _ip.reset(ip_token)
