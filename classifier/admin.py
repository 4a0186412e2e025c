from django.contrib import admin

from .models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "is_shadow", "threshold", "sha256", "created_at")
    readonly_fields = (
        "name", "file_path", "card_path", "sha256", "metrics", "threshold", "is_active", "is_shadow", "created_at"
    )
    # No activate action: activation is a signed decision (password and reason) on the model pages
    # (classifier.views) or the API, recorded as a ModelActivation.

    def has_add_permission(self, request):
        return False  # registered with `manage.py register_model`, which checks the sha256

    def has_delete_permission(self, request, obj=None):
        return False  # predictions keep pointing at the version that made them
