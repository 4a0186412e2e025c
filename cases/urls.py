from django.urls import path

from . import review_views, views

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
    path("worklist/", review_views.WorklistView.as_view(), name="worklist"),
    path("samples/<int:pk>/review/", review_views.ReviewView.as_view(), name="sample-review"),
    path(
        "samples/<int:pk>/review/cells/<int:image_pk>/", review_views.CellReviewView.as_view(), name="cell-review"
    ),
    path("samples/<int:pk>/review/confirm-group/", review_views.GroupConfirmView.as_view(), name="group-confirm"),
    path("samples/<int:pk>/review/comment/", review_views.SampleCommentView.as_view(), name="sample-comment"),
    path("samples/<int:pk>/sign/", review_views.SignView.as_view(), name="sample-sign"),
    path("samples/<int:pk>/amend/", review_views.AmendView.as_view(), name="sample-amend"),
    path("samples/<int:pk>/signed/<int:version>/", review_views.SignedVersionView.as_view(), name="signed-version"),
    path("samples/<int:pk>/report.pdf", review_views.ReportPdfView.as_view(), name="sample-report-pdf"),
    path("samples/<int:pk>/fhir.json", review_views.FhirView.as_view(), name="sample-fhir"),
    path("images/<int:pk>/heatmap/", review_views.HeatmapView.as_view(), name="image-heatmap"),
    path("agreement/", review_views.AgreementView.as_view(), name="agreement"),
]
