from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class HematoVisionUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (("Signature", {"fields": ("printed_name", "qualification")}),)
    list_display = ("username", "get_printed_name", "email", "is_active", "is_staff", "roles")

    @admin.display(description="Roles")
    def roles(self, obj):
        return ", ".join(obj.groups.values_list("name", flat=True))
