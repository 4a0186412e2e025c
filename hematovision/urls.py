from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path

from accounts import views as account_views

admin.site.site_header = "HematoVision administration"
admin.site.site_title = "HematoVision admin"


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("accounts/login/", account_views.LoginView.as_view(), name="login"),
    path("accounts/login/code/", account_views.LoginTwoFactorView.as_view(), name="login-two-factor"),
    path("accounts/two-factor/", account_views.TwoFactorView.as_view(), name="two-factor"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("api.urls")),
    path("", include("cases.urls")),
    path("", include("review.urls")),
    path("", include("audit.urls")),
    path("", include("classifier.urls")),
]

handler500 = "api.exceptions.server_error"
