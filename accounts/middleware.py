from django.conf import settings
from django.contrib.auth.views import redirect_to_login

# Paths reachable without signing in: the login page itself and static files.
PUBLIC_PREFIXES = ("/accounts/login/", "/static/", "/healthz")


class LoginRequiredEverywhereMiddleware:
    """Every page requires login, including ones a future developer forgets to decorate."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.user.is_authenticated and not request.path.startswith(PUBLIC_PREFIXES):
            if request.path.startswith("/api/"):
                return self.get_response(request)  # DRF answers 401/403 itself
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)
