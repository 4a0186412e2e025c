"""The adult reference ranges that migration review.0002 seeds, for tests that run after a
transactional test flushed the tables (browser tests)."""
import importlib

from review.models import ReferenceRange

SEED = importlib.import_module("review.migrations.0002_reference_ranges")


def seed_adult_ranges() -> None:
    for cell_class, ((p_low, p_high), (a_low, a_high)) in SEED.ADULT_RANGES.items():
        ReferenceRange.objects.get_or_create(
            cell_class=cell_class,
            defaults={"percent_low": p_low, "percent_high": p_high, "absolute_low": a_low, "absolute_high": a_high,
                      "source": SEED.SOURCE},
        )
