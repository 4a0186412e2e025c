"""Reads for doctors: worklist, review gallery, differential, agreement."""
from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Case, Count, IntegerField, Prefetch, Q, QuerySet, Value, When

from .cell_classes import CELL_CLASSES, EXCLUDED, FINAL_CLASS_CHOICES
from .models import (
    CellImage,
    ImageStatus,
    Priority,
    Sample,
    SampleStatus,
    Signature,
)

CLASSES = CELL_CLASSES
CLASS_LABELS = dict(FINAL_CLASS_CHOICES)
UNIDENTIFIED = "UNIDENTIFIED"
REVIEWABLE_STATUSES = (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED)


def worklist(
    *,
    statuses: list[str] | None = None,
    received_from: datetime.date | None = None,
    received_to: datetime.date | None = None,
) -> QuerySet[Sample]:
    """Samples for doctors: STAT first, then the oldest received first."""
    qs = Sample.objects.select_related("patient").filter(status__in=statuses or list(REVIEWABLE_STATUSES))
    if received_from:
        qs = qs.filter(received_at__date__gte=received_from)
    if received_to:
        qs = qs.filter(received_at__date__lte=received_to)
    return qs.annotate(
        stat_first=Case(When(priority=Priority.STAT, then=Value(0)), default=Value(1), output_field=IntegerField()),
        image_count=Count("images", distinct=True),
        classified_count=Count("images", filter=Q(images__status=ImageStatus.CLASSIFIED), distinct=True),
        reviewed_count=Count("images__review", distinct=True),
        unidentified_count=Count(
            "images",
            filter=Q(images__predictions__unidentified=True, images__review__isnull=True),
            distinct=True,
        ),
    ).order_by("stat_first", "received_at", "pk")


def _latest_prediction(image: CellImage):
    preds = list(image.predictions.all())  # prefetched, newest first
    return preds[0] if preds else None


@dataclass
class CellRow:
    image: CellImage
    prediction: object | None
    review: object | None

    @property
    def ai_class(self) -> str | None:
        return self.prediction.predicted_class if self.prediction else None

    @property
    def group(self) -> str:
        if self.prediction is None:
            return UNIDENTIFIED
        if self.prediction.unidentified and self.review is None:
            return UNIDENTIFIED
        return self.prediction.predicted_class

    @property
    def final_class(self) -> str | None:
        return self.review.final_class if self.review else None


@dataclass
class ReviewGroup:
    key: str
    label: str
    cells: list[CellRow] = field(default_factory=list)

    @property
    def unreviewed(self) -> int:
        return sum(1 for c in self.cells if c.review is None)


def review_cells(*, sample: Sample) -> list[CellRow]:
    from classifier.models import Prediction

    images = (
        sample.images.filter(status=ImageStatus.CLASSIFIED)
        .select_related("review", "review__reviewed_by")
        .prefetch_related(
            Prefetch("predictions", queryset=Prediction.objects.select_related("model_version").order_by("-created_at"))
        )
        .order_by("pk")
    )
    rows = []
    for img in images:
        review = getattr(img, "review", None) if hasattr(img, "review") else None
        rows.append(CellRow(image=img, prediction=_latest_prediction(img), review=review))
    return rows


def review_groups(*, rows: list[CellRow]) -> list[ReviewGroup]:
    """The gallery: the low-confidence 'unidentified' cells on top, then one group per AI class."""
    groups = {UNIDENTIFIED: ReviewGroup(UNIDENTIFIED, "Unidentified (low confidence)")}
    for c in CLASSES:
        groups[c] = ReviewGroup(c, CLASS_LABELS[c])
    for row in rows:
        groups[row.group].cells.append(row)
    for g in groups.values():
        g.cells.sort(key=lambda r: (r.prediction.confidence if r.prediction else 0.0))
    return [g for g in groups.values() if g.cells]


def _quantize(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class DifferentialRow:
    cell_class: str
    label: str
    ai_count: int
    ai_percent: Decimal | None
    final_count: int
    final_percent: Decimal | None
    absolute: Decimal | None  # ×10⁹/L, from the final percentage and the WBC count


@dataclass(frozen=True)
class Differential:
    rows: list[DifferentialRow]
    ai_total: int
    final_total: int
    excluded: int
    unreviewed: int
    wbc_count: Decimal | None

    def as_dict(self) -> dict:
        def s(v):
            return None if v is None else str(v)

        return {
            "rows": [
                {
                    "class": r.cell_class, "label": r.label, "ai_count": r.ai_count, "ai_percent": s(r.ai_percent),
                    "final_count": r.final_count, "final_percent": s(r.final_percent), "absolute": s(r.absolute),
                }
                for r in self.rows
            ],
            "ai_total": self.ai_total,
            "final_total": self.final_total,
            "excluded": self.excluded,
            "unreviewed": self.unreviewed,
            "wbc_count": s(self.wbc_count),
        }


def differential(*, rows: list[CellRow], wbc_count: Decimal | None) -> Differential:
    """Counts and % per class, AI vs final, and absolute counts (×10⁹/L) when the WBC is known.

    AI: every classified cell by its predicted class. Final: the doctor's classes; excluded
    cells ("not classified") count in neither the numerator nor the denominator.
    """
    ai = Counter(r.ai_class for r in rows if r.ai_class)
    final = Counter(r.final_class for r in rows if r.final_class and r.final_class != EXCLUDED)
    ai_total, final_total = sum(ai.values()), sum(final.values())
    out = []
    for c in CLASSES:
        ai_pct = _quantize(Decimal(100 * ai[c]) / ai_total, "0.1") if ai_total else None
        fin_pct = _quantize(Decimal(100 * final[c]) / final_total, "0.1") if final_total else None
        absolute = None
        if wbc_count is not None and final_total:
            absolute = _quantize(Decimal(wbc_count) * final[c] / final_total, "0.01")
        out.append(DifferentialRow(c, CLASS_LABELS[c], ai[c], ai_pct, final[c], fin_pct, absolute))
    return Differential(
        rows=out,
        ai_total=ai_total,
        final_total=final_total,
        excluded=sum(1 for r in rows if r.final_class == EXCLUDED),
        unreviewed=sum(1 for r in rows if r.review is None),
        wbc_count=wbc_count,
    )


def signatures(*, sample: Sample) -> QuerySet[Signature]:
    return sample.signatures.select_related("signer").order_by("version")


def signature(*, sample: Sample, version: int | None = None) -> Signature | None:
    """The given signed version, or the latest one; None if there is none."""
    sigs = signatures(sample=sample)
    return sigs.filter(version=version).first() if version else sigs.last()


@dataclass
class Agreement:
    model_version: str
    matrix: dict[str, dict[str, int]]  # ai class → final class → count
    per_class: dict[str, float | None]  # share of cells of an AI class that the doctor kept
    total: int
    agreed: int

    @property
    def overall(self) -> float | None:
        return self.agreed / self.total if self.total else None


def agreement_by_model_version() -> list[Agreement]:
    """AI vs final over the cells of signed samples, one table per model version."""
    from classifier.models import Prediction

    qs = (
        Prediction.objects.filter(image__sample__status=SampleStatus.SIGNED, image__review__isnull=False)
        .values_list("model_version__name", "predicted_class", "image__review__final_class")
    )
    by_version: dict[str, Counter] = {}
    for version, ai, final in qs:
        by_version.setdefault(version, Counter())[(ai, final)] += 1
    out = []
    finals = [*CLASSES, EXCLUDED]
    for version, counts in sorted(by_version.items()):
        matrix = {a: {f: counts[(a, f)] for f in finals} for a in CLASSES}
        per_class = {}
        for a in CLASSES:
            n = sum(matrix[a].values())
            per_class[a] = matrix[a][a] / n if n else None
        total = sum(counts.values())
        agreed = sum(counts[(a, a)] for a in CLASSES)
        out.append(Agreement(version, matrix, per_class, total, agreed))
    return out


def confirmed_cells() -> QuerySet[CellImage]:
    """Cells a doctor gave a final class (not excluded) in signed samples: the retraining set."""
    return (
        CellImage.objects.filter(sample__status=SampleStatus.SIGNED, review__isnull=False)
        .exclude(review__final_class=EXCLUDED)
        .select_related("review", "sample")
    )
