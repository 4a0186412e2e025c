from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from .selectors import two_factor_enrolled, two_factor_required

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


class TwoFactorRequiredMiddleware:
    """A signed-in session must have passed the second factor when the user has one, and a doctor or
    admin under ``HV_REQUIRE_2FA`` must enrol before any other page (or session API call).

    After ``OTPMiddleware``. The login view asks enrolled users for the code before ``login()``, so
    an unverified session of an enrolled user came another way (e.g. enrolment on another
    device): it is signed out.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if not user.is_authenticated or user.is_verified() or request.path.startswith(PUBLIC_PREFIXES):
            return self.get_response(request)
        if request.path in (reverse("two-factor"), reverse("logout")):
            return self.get_response(request)
        if two_factor_enrolled(user=user):
            logout(request)
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": "Sign in again with your one-time code."}, status=401)
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if two_factor_required(user=user):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {"detail": "Two-factor sign-in is required for your role: enrol on the web page first."},
                    status=403,
                )
            return redirect("two-factor")
        return self.get_response(request)
