from django.urls import path

from . import views

urlpatterns = [
    path("audit/", views.AuditTrailView.as_view(), name="audit-trail"),
]
