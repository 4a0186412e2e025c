from django.apps import AppConfig


class ReviewConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "review"
    verbose_name = "Review and sign-off"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (answers the classifier's request for confirmed cells)
