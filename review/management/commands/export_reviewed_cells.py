import shutil
from pathlib import Path

from django.core.management.base import BaseCommand

from review.selectors import confirmed_cells


class Command(BaseCommand):
    help = (
        "Export every doctor-confirmed cell image of signed samples into OUT/<CLASS>/ "
        "(the class-per-folder layout `python -m training train --data` reads)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args, out: Path, **options):
        counts: dict[str, int] = {}
        for image in confirmed_cells().iterator():
            cls = image.review.final_class
            folder = out / cls
            folder.mkdir(parents=True, exist_ok=True)
            suffix = Path(image.file.name).suffix or ".img"
            target = folder / f"{image.sample.accession_number}_{image.pk}{suffix}"
            with image.file.open("rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            counts[cls] = counts.get(cls, 0) + 1
        total = sum(counts.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        self.stdout.write(f"Exported {total} confirmed cell image(s) to {out} ({detail})")
