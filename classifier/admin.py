from django.contrib import admin, messages

from . import services
from .models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "threshold", "sha256", "created_at")
    readonly_fields = ("name", "file_path", "card_path", "sha256", "metrics", "threshold", "is_active", "created_at")
    actions = ["activate"]

    def has_add_permission(self, request):
        return False  # registered with `manage.py register_model`, which checks the sha256

    def has_delete_permission(self, request, obj=None):
        return False  # predictions keep pointing at the version that made them

    @admin.action(description="Activate the selected model version", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to activate.", messages.ERROR)
            return
        version = services.model_version_activate(
            version=queryset.get(), actor=request.user, reason="activated in admin"
        )
        self.message_user(request, f"{version.name} is now the active model.", messages.SUCCESS)
