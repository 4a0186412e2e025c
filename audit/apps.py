from django.apps import AppConfig
from django.contrib.auth import get_user_model


class AuditConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (sign-in, sign-out, failed sign-in, two-factor enrolment)
        from .services import register, register_m2m

        user_model = get_user_model()
        register(user_model)
        register_m2m(user_model.groups.through, field="groups")
