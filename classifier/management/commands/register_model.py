from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier import selectors, services


class Command(BaseCommand):
    help = "Register a trained model (.keras + JSON card) as a ModelVersion; optionally activate it."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="The .keras file (default: the model shipped in the repo)")
        parser.add_argument("--card", type=Path, help="Its JSON model card (default: beside the model)")
        parser.add_argument("--activate", action="store_true", help="Make it the active version")
        parser.add_argument(
            "--activate-if-none", action="store_true", help="Activate it only if no version is active yet"
        )

    def handle(self, *args, model=None, card=None, activate=False, activate_if_none=False, **options):
        from classifier.inference import default_card_path, default_model_path

        model = model or default_model_path()
        card = card or (default_card_path() if model == default_model_path() else model.with_suffix(".json"))
        if not model.exists() or not card.exists():
            raise CommandError(f"Model or card not found: {model}, {card}")
        make_active = activate or (activate_if_none and selectors.active_model_version() is None)
        try:
            version = services.model_version_register(model_path=model, card_path=card, activate=make_active)
        except services.ModelFileMismatch as exc:
            raise CommandError(str(exc))
        state = "active" if version.is_active else "registered (not active)"
        self.stdout.write(f"Model version {version.name} {state}; sha256 {version.sha256[:16]}…")
