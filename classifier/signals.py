"""What the classifier asks of the apps above it."""
from django.dispatch import Signal

# Sent by candidate training (``classifier.adaptation``) to collect the doctor-confirmed cells of
# signed samples. The review app, which owns the doctors' verdicts, answers it
# (``review/receivers.py``) with a list of ``classifier.adaptation.ConfirmedCell``.
confirmed_cells_wanted = Signal()
