"""The white-cell classes: the one definition the models, the review, the reports and the API use.

The five-part differential, in the order of the review keys 1-5 (the order of the first four
predates BASOPHIL, so that existing keys and stored values did not move). ``EXCLUDED`` is the
reviewer's "not counted" verdict. Pure Python: training code imports it too.
"""

from __future__ import annotations

CELL_CLASSES: tuple[str, ...] = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL")
CELL_CLASS_LABELS: dict[str, str] = {c: c.capitalize() for c in CELL_CLASSES}
EXCLUDED = "EXCLUDED"
FINAL_CLASS_CHOICES: list[tuple[str, str]] = [
    *CELL_CLASS_LABELS.items(),
    (EXCLUDED, "Not classified / excluded"),
]
