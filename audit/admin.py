from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only."""

    list_display = ("timestamp", "actor_username", "action", "object_type", "object_id", "object_repr", "ip")
    list_filter = ("action", "object_type")
    search_fields = ("actor_username", "object_repr", "object_id", "reason")
    date_hierarchy = "timestamp"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
