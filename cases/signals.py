"""What the case records tell the apps above them."""
from django.dispatch import Signal

# Sent with ``image_ids`` once the transaction that stored new cell images has committed
# (the classifier queues them).
images_added = Signal()

# Sent with ``field_ids`` once the transaction that stored new whole fields has committed
# (the classifier queues them for white-cell detection).
fields_added = Signal()

# Sent with ``data`` (the bytes of a validated upload) when the technician let the system decide
# whether it is a whole field or a single cell. A receiver answers ``(is_field, reason)``, the
# reason being a sentence for the technician; the classifier's detector receives it.
upload_kind_requested = Signal()
