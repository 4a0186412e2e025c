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
    path("samples/<int:pk>/edit/", views.SampleEditView.as_view(), name="sample-edit"),
    path("samples/<int:pk>/cancel/", views.SampleCancelView.as_view(), name="sample-cancel"),
    path("samples/<int:pk>/history/", views.SampleHistoryView.as_view(), name="sample-history"),
    path("samples/<int:pk>/barcode.png", views.SampleBarcodeView.as_view(), name="sample-barcode"),
    path("samples/<int:pk>/label.pdf", views.SampleLabelView.as_view(), name="sample-label"),
    path("images/<int:pk>/file/", views.CellImageFileView.as_view(), name="image-file"),
    path("fields/<int:pk>/file/", views.FieldFileView.as_view(), name="field-file"),
]
