from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import review_views, views
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
    path("samples/<int:pk>/images/", views.SampleImagesView.as_view(), name="sample-images"),
    path("images/<int:pk>/file/", views.ImageFileView.as_view(), name="image-file"),
    path("predictions/<int:pk>/heatmap/", views.PredictionHeatmapView.as_view(), name="prediction-heatmap"),
    path("model-versions/", views.ModelVersionListView.as_view(), name="modelversion-list"),
    path("model-versions/<int:pk>/activate/", views.ModelVersionActivateView.as_view(), name="modelversion-activate"),
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
    # Last: unknown paths (e.g. a non-numeric id) get a JSON 404. Only paths ending in "/", so that
    # APPEND_SLASH still redirects /api/v1/patients to /api/v1/patients/.
    re_path(r"^[\s\S]*/$", views.not_found, name="not-found"),
    # File names (report.pdf of an unknown or malformed sample id) get no slash appended: JSON 404 too.
    re_path(r"^[\s\S]*\.pdf$", views.not_found, name="not-found"),
]
