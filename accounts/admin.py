from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from .models import User
from .services import user_roles_check


class RoleCheckedUserChangeForm(UserChangeForm):
    """The roles chosen (groups) are checked by ``accounts.services.user_roles_check`` for ``actor``."""

    actor = None  # the signed-in user, set by HematoVisionUserAdmin.get_form

    def clean(self):
        data = super().clean()
        if "groups" in data:
            try:
                user_roles_check(actor=self.actor, user=self.instance, roles=[g.name for g in data["groups"]])
            except ValidationError as exc:
                self.add_error(None, exc)
        return data


@admin.register(User)
class HematoVisionUserAdmin(UserAdmin):
    form = RoleCheckedUserChangeForm
    fieldsets = UserAdmin.fieldsets + (("Signature", {"fields": ("printed_name", "qualification")}),)
    list_display = ("username", "get_printed_name", "email", "is_active", "is_staff", "roles")

    @admin.display(description="Roles")
    def roles(self, obj):
        return ", ".join(obj.groups.values_list("name", flat=True))

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)  # a new class for each request
        form.actor = request.user
        return form

    def get_readonly_fields(self, request, obj=None):
        # A superuser is made on the command line (createsuperuser), never here; roles are the
        # groups, so permissions are never given to one user directly.
        return (*super().get_readonly_fields(request, obj), "is_superuser", "user_permissions")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # also guards the superuser's password page
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


admin.site.unregister(Group)


@admin.register(Group)
class RoleGroupAdmin(GroupAdmin):
    """Roles are groups named after ``accounts.roles.Role`` with the permissions ``ensure_role_groups`` gives
    them: renaming one, or giving it a permission, would hand a role to its members. Superusers only."""

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
