from django.urls import path

from . import views

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model-list"),
    path("models/candidates/start/", views.CandidateStartView.as_view(), name="candidate-start"),
    path("models/candidates/<int:pk>/", views.CandidateDetailView.as_view(), name="candidate-detail"),
    path("models/candidates/<int:pk>/cancel/", views.CandidateCancelView.as_view(), name="candidate-cancel"),
    path("models/<int:pk>/comparison/", views.ModelComparisonView.as_view(), name="model-comparison"),
    path("models/<int:pk>/shadow/", views.ModelShadowView.as_view(), name="model-shadow"),
    path("models/<int:pk>/activate/", views.ModelActivateView.as_view(), name="model-activate"),
]
