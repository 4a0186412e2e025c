from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import field_views, model_views, review_views, views
from .permissions import IsClinicalStaff

app_name = "api"

# The schema and its UI are for signed-in clinical staff only; GET only (the HTML renderer of the
# UI cannot render an OPTIONS answer).
_docs_access = {
    "authentication_classes": views.APIBase.authentication_classes,
    "permission_classes": [IsClinicalStaff],
    "http_method_names": ["get", "head"],
}

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(**_docs_access), name="schema"),
    # The split view loads its start-up script from a URL: no inline script (Content-Security-Policy).
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="api/swagger_ui.html", **_docs_access
        ),
        name="docs",
    ),
    path("auth/token/", views.ObtainTokenView.as_view(), name="token"),
    path("auth/token/revoke/", views.RevokeTokenView.as_view(), name="token-revoke"),
    path("patients/", views.PatientListCreateView.as_view(), name="patient-list"),
    path("patients/<int:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path("samples/", views.SampleListCreateView.as_view(), name="sample-list"),
    path("samples/<int:pk>/", views.SampleDetailView.as_view(), name="sample-detail"),
    path("samples/<int:pk>/cancel/", views.SampleCancelView.as_view(), name="sample-cancel"),
    path("samples/<int:pk>/images/", views.SampleImagesView.as_view(), name="sample-images"),
    path("images/<int:pk>/file/", views.ImageFileView.as_view(), name="image-file"),
    path("predictions/<int:pk>/heatmap/", views.PredictionHeatmapView.as_view(), name="prediction-heatmap"),
    path("model-versions/", views.ModelVersionListView.as_view(), name="modelversion-list"),
    path("model-versions/<int:pk>/activate/", model_views.ModelVersionActivateView.as_view(),
         name="modelversion-activate"),
    # Models fitted to this lab (api/model_views.py).
    path("model-versions/<int:pk>/comparison/", model_views.ModelVersionComparisonView.as_view(),
         name="modelversion-comparison"),
    path("model-versions/<int:pk>/shadow/", model_views.ModelVersionShadowView.as_view(), name="modelversion-shadow"),
    path("model-activations/", model_views.ModelActivationListView.as_view(), name="modelactivation-list"),
    path("candidate-runs/", model_views.CandidateRunListView.as_view(), name="candidate-run-list"),
    path("candidate-runs/<int:pk>/", model_views.CandidateRunDetailView.as_view(), name="candidate-run-detail"),
    path("candidate-runs/<int:pk>/cancel/", model_views.CandidateRunCancelView.as_view(), name="candidate-run-cancel"),
    path("audit/", views.AuditEventListView.as_view(), name="audit-list"),
    # Doctor review and sign-off (api/review_views.py).
    path("worklist/", review_views.WorklistView.as_view(), name="worklist"),
    path("samples/<int:pk>/review/", review_views.SampleReviewView.as_view(), name="sample-review"),
    path(
        "samples/<int:pk>/images/<int:image_pk>/review/", review_views.CellReviewView.as_view(), name="cell-review"
    ),
    path("samples/<int:pk>/review/confirm-group/", review_views.GroupConfirmView.as_view(), name="group-confirm"),
    path("samples/<int:pk>/comment/", review_views.SampleCommentView.as_view(), name="sample-comment"),
    path("samples/<int:pk>/sign/", review_views.SampleSignView.as_view(), name="sample-sign"),
    path("samples/<int:pk>/amend/", review_views.SampleAmendView.as_view(), name="sample-amend"),
    path("samples/<int:pk>/signatures/", review_views.SampleSignaturesView.as_view(), name="sample-signatures"),
    path("samples/<int:pk>/report.pdf", review_views.SampleReportPdfView.as_view(), name="sample-report-pdf"),
    path("samples/<int:pk>/fhir/", review_views.SampleFhirView.as_view(), name="sample-fhir"),
    path("agreement/", review_views.AgreementView.as_view(), name="agreement"),
    # Whole fields (api/field_views.py); a field is uploaded through samples/<id>/images/.
    path("samples/<int:pk>/fields/", field_views.SampleFieldsView.as_view(), name="sample-fields"),
    path("fields/<int:pk>/", field_views.FieldDetailView.as_view(), name="field-detail"),
    path("fields/<int:pk>/file/", field_views.FieldFileView.as_view(), name="field-file"),
    path("fields/<int:pk>/cells/", field_views.FieldCellAddView.as_view(), name="field-cells"),
    path(
        "fields/<int:pk>/cells/<int:image_pk>/reject/", field_views.FieldCellRejectView.as_view(),
        name="field-cell-reject",
    ),
    path("agreement/detection/", field_views.DetectionAgreementView.as_view(), name="detection-agreement"),
    # Last: unknown paths (e.g. a non-numeric id) get a JSON 404. Only paths ending in "/", so that
    # APPEND_SLASH still redirects /api/v1/patients to /api/v1/patients/.
    re_path(r"^[\s\S]*/$", views.not_found, name="not-found"),
    # File names (report.pdf of an unknown or malformed sample id) get no slash appended: JSON 404 too.
    re_path(r"^[\s\S]*\.pdf$", views.not_found, name="not-found"),
]
