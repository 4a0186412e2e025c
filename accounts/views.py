"""Sign-in pages: password, then (enrolled users) the one-time code; two-factor enrolment."""
from __future__ import annotations

import time
from base64 import b32encode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.views import View
from django_otp import login as otp_login

from . import selectors, services
from .forms import OneTimeCodeForm

# Session key of a sign-in whose password was right and whose one-time code is still awaited.
PENDING = "hv_two_factor_pending"


class LoginView(auth_views.LoginView):
    """Step 1. Users without a second factor are signed in here; the others go on to step 2."""

    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if not selectors.two_factor_enrolled(user=user):
            return super().form_valid(form)
        self.request.session[PENDING] = {
            "user_id": user.pk, "backend": user.backend, "next": self.get_success_url(), "at": time.time(),
        }
        return redirect("login-two-factor")


class LoginTwoFactorView(View):
    """Step 2: the one-time code. A wrong one is a failed sign-in (lockout counters, audit)."""

    template_name = "accounts/login_two_factor.html"

    def _pending(self, request):
        pending = request.session.get(PENDING)
        if not pending or time.time() - pending["at"] > settings.HV_2FA_STEP_SECONDS:
            request.session.pop(PENDING, None)
            return None, None
        user = get_user_model().objects.filter(pk=pending["user_id"], is_active=True).first()
        return pending, user

    def get(self, request):
        if request.user.is_authenticated:
            return redirect(settings.LOGIN_REDIRECT_URL)
        pending, user = self._pending(request)
        if user is None:
            return redirect("login")
        return render(request, self.template_name, {"form": OneTimeCodeForm()})

    def post(self, request):
        pending, user = self._pending(request)
        if user is None:
            return redirect("login")
        form = OneTimeCodeForm(request.POST)
        token = form.cleaned_data["otp"] if form.is_valid() else ""
        device = services.sign_in_second_factor(request=request, user=user, token=token)
        if device is None:
            if getattr(request, "axes_locked_out", False):
                request.session.pop(PENDING, None)  # AxesMiddleware answers with the locked page
            form.add_error(None, "The code is not valid.")
            return render(request, self.template_name, {"form": form}, status=200)
        del request.session[PENDING]
        user.backend = pending["backend"]
        user.otp_device = device  # django-otp marks the session verified at login()
        auth_login(request, user)
        return redirect(pending["next"])


class TwoFactorView(LoginRequiredMixin, View):
    """Enrolment: the authenticator's secret (otpauth URI) until a code confirms it; recovery codes once."""

    template_name = "accounts/two_factor.html"

    def get(self, request):
        if selectors.two_factor_enrolled(user=request.user):
            return render(request, self.template_name, {"enrolled": True})
        return self._enrolment_page(request, OneTimeCodeForm())

    def post(self, request):
        if selectors.two_factor_enrolled(user=request.user):
            return redirect("two-factor")  # replacing the authenticator is an admin's job, not a session's
        form = OneTimeCodeForm(request.POST)
        if form.is_valid():
            try:
                device, codes = services.two_factor_enrolment_confirm(user=request.user, token=form.cleaned_data["otp"])
            except services.InvalidCode as exc:
                form.add_error("otp", str(exc))
            else:
                otp_login(request, device)
                return render(request, self.template_name, {"enrolled": True, "recovery_codes": codes})
        return self._enrolment_page(request, form, status=400)

    def _enrolment_page(self, request, form, status=200):
        device = services.two_factor_enrolment_start(user=request.user)
        context = {
            "form": form,
            "config_url": device.config_url,
            "secret": b32encode(device.bin_key).decode().rstrip("="),
            "required": selectors.two_factor_required(user=request.user),
        }
        return render(request, self.template_name, context, status=status)

