from django.urls import path

from . import views

urlpatterns = [
    path("worklist/", views.WorklistView.as_view(), name="worklist"),
    path("samples/<int:pk>/review/", views.ReviewView.as_view(), name="sample-review"),
    path("samples/<int:pk>/review/confirm-group/", views.GroupConfirmView.as_view(), name="group-confirm"),
    path("samples/<int:pk>/review/comment/", views.SampleCommentView.as_view(), name="sample-comment"),
    path("samples/<int:pk>/sign/", views.SignView.as_view(), name="sample-sign"),
    path("samples/<int:pk>/amend/", views.AmendView.as_view(), name="sample-amend"),
    path("samples/<int:pk>/signed/<int:version>/", views.SignedVersionView.as_view(), name="signed-version"),
    path("samples/<int:pk>/report.pdf", views.ReportPdfView.as_view(), name="sample-report-pdf"),
    path("samples/<int:pk>/fhir.json", views.FhirView.as_view(), name="sample-fhir"),
    path("images/<int:pk>/heatmap/", views.HeatmapView.as_view(), name="image-heatmap"),
    path("agreement/", views.AgreementView.as_view(), name="agreement"),
    path("fields/<int:pk>/", views.FieldView.as_view(), name="field-view"),
]
