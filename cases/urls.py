from django.urls import path

from . import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("patients/", views.PatientListView.as_view(), name="patient-list"),
    path("patients/new/", views.PatientCreateView.as_view(), name="patient-create"),
    path("patients/<int:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path("patients/<int:patient_pk>/samples/new/", views.SampleCreateView.as_view(), name="sample-create"),
    path("samples/", views.SampleListView.as_view(), name="sample-list"),
    path("samples/<int:pk>/", views.SampleDetailView.as_view(), name="sample-detail"),
    path("samples/<int:pk>/upload/", views.SampleUploadView.as_view(), name="sample-upload"),
    path("samples/<int:pk>/progress/", views.SampleProgressView.as_view(), name="sample-progress"),
    path("images/<int:pk>/file/", views.CellImageFileView.as_view(), name="image-file"),
    path("audit/", views.AuditTrailView.as_view(), name="audit-trail"),
]
