from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Users and roles"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (roles stay separated)
        from .roles import ensure_role_groups

        # After every app: permissions of later apps exist only once their own migrate ran.
        post_migrate.connect(lambda **kwargs: ensure_role_groups(), weak=False, dispatch_uid="hv-roles")
