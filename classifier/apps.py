from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "classifier"
    verbose_name = "Classifier"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (new images are queued for classification)
