"""What the review app answers the classifier: the doctor-confirmed cells it trains candidates on."""
from django.dispatch import receiver

from classifier.adaptation import ConfirmedCell
from classifier.signals import confirmed_cells_wanted

from .selectors import confirmed_cells


@receiver(confirmed_cells_wanted, dispatch_uid="hv-review-confirmed-cells")
def _confirmed_cells(sender, **kwargs) -> list[ConfirmedCell]:
    rows = confirmed_cells().order_by("pk").values_list("pk", "sample_id", "review__final_class")
    return [ConfirmedCell(image_id, sample_id, label) for image_id, sample_id, label in rows]
