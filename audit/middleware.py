from accounts.context import actor_var, client_ip, ip_var


class AuditContextMiddleware:
    """Make the signed-in user and client IP available to the audit trail."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        ip_token = ip_var.set(client_ip(request))
        user = getattr(request, "user", None)
        actor_token = actor_var.set(user if user is not None and user.is_authenticated else None)
        try:
            return self.get_response(request)
        finally:
            actor_var.reset(actor_token)
            ip_var.reset(ip_token)
