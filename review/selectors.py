"""Reads for doctors: worklist, review gallery, differential, agreement."""
from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import TruncMonth
from django.http import Http404

from cases.cell_classes import CELL_CLASSES, EXCLUDED, FINAL_CLASS_CHOICES
from cases.models import CellImage, CellOrigin, Field, FieldStatus, ImageStatus, Priority, Sample, SampleStatus
from classifier.models import Prediction
from classifier.selectors import images_with_latest_prediction, latest_prediction

from .models import CellReview, ReferenceRange, Signature

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
        classified_count=Count(
            "images", filter=Q(images__status=ImageStatus.CLASSIFIED, images__rejected_at__isnull=True), distinct=True
        ),
        reviewed_count=Count("images__review", distinct=True),
        unidentified_count=Count(
            "images",
            filter=Q(images__predictions__unidentified=True, images__review__isnull=True),
            distinct=True,
        ),
    ).order_by("stat_first", "received_at", "pk")


@dataclass
class CellRow:
    image: CellImage
    prediction: Prediction | None
    review: CellReview | None

    @property
    def ai_class(self) -> str | None:
        return self.prediction.predicted_class if self.prediction else None

    @property
    def group(self) -> str:
        """Where the gallery shows the cell: a reviewed cell with its final class (a reclassified
        cell leaves the AI's group), an unreviewed one with the AI's class, or unidentified."""
        if self.review is not None:
            return self.review.final_class
        if self.prediction is None or self.prediction.unidentified:
            return UNIDENTIFIED
        return self.prediction.predicted_class

    @property
    def reclassified(self) -> bool:
        """The doctor's class differs from the AI's (the gallery notes "was: … (AI)")."""
        return bool(self.review and self.ai_class and self.review.final_class != self.ai_class)

    @property
    def final_class(self) -> str | None:
        return self.review.final_class if self.review else None

    @property
    def unidentified(self) -> bool:
        return bool(self.prediction and self.prediction.unidentified)

    @property
    def comment(self) -> str:
        return self.review.comment if self.review else ""

    @property
    def reviewed_by(self) -> str | None:
        return self.review.reviewed_by.get_printed_name() if self.review else None


@dataclass
class ReviewGroup:
    key: str
    label: str
    cells: list[CellRow] = field(default_factory=list)

    @property
    def unreviewed(self) -> int:
        return sum(1 for c in self.cells if c.review is None)


def review_cells(*, sample: Sample) -> list[CellRow]:
    """The sample's classified cells, without the detections a doctor rejected (not white cells)."""
    images = images_with_latest_prediction(
        sample.images.filter(status=ImageStatus.CLASSIFIED, rejected_at__isnull=True)
        .select_related("review", "review__reviewed_by")
    ).order_by("pk")
    return [
        CellRow(image=img, prediction=latest_prediction(image=img), review=getattr(img, "review", None))
        for img in images
    ]


def review_groups(*, rows: list[CellRow], keep_empty: bool = False) -> list[ReviewGroup]:
    """The gallery: the low-confidence 'unidentified' cells on top, then one group per class (the
    final class once reviewed, else the AI's), then the excluded cells."""
    groups = {UNIDENTIFIED: ReviewGroup(UNIDENTIFIED, "Unidentified (low confidence)")}
    for c in CLASSES:
        groups[c] = ReviewGroup(c, CLASS_LABELS[c])
    groups[EXCLUDED] = ReviewGroup(EXCLUDED, "Excluded (not counted)")
    for row in rows:
        groups[row.group].cells.append(row)
    for g in groups.values():
        g.cells.sort(key=lambda r: (r.prediction.confidence if r.prediction else 0.0))
    return [g for g in groups.values() if g.cells or keep_empty]


def _quantize(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def percentages(counts: dict[str, int]) -> dict[str, Decimal]:
    """Each count as a percentage of their sum to 0.1, by largest remainder: the printed values add
    up to exactly 100.0 (rounding each one alone can print 100.1 or 99.9). Ties go to the larger
    count, then to the class named first."""
    total = sum(counts.values())
    if not total:
        return {}
    tenths = {c: Decimal(1000 * n) / total for c, n in counts.items()}  # in units of 0.1 %
    floors = {c: int(v) for c, v in tenths.items()}
    short = 1000 - sum(floors.values())
    order = list(counts)
    by_remainder = sorted(order, key=lambda c: (-(tenths[c] - floors[c]), -counts[c], order.index(c)))
    for c in by_remainder[:short]:
        floors[c] += 1
    return {c: (Decimal(floors[c]) / 10).quantize(Decimal("0.1")) for c in order}


@dataclass(frozen=True)
class Reference:
    """An adult reference interval (``review.models.ReferenceRange``) as the differential uses it."""

    percent_low: Decimal
    percent_high: Decimal
    absolute_low: Decimal
    absolute_high: Decimal
    source: str


def reference_ranges() -> dict[str, Reference]:
    """The lab's reference interval per cell class (classes without one are not flagged)."""
    return {
        r.cell_class: Reference(r.percent_low, r.percent_high, r.absolute_low, r.absolute_high, r.source)
        for r in ReferenceRange.objects.all()
    }


def flag(value: Decimal | None, low: Decimal | None, high: Decimal | None) -> str:
    """"H" above the interval, "L" below it, "" inside it or when there is nothing to compare."""
    if value is None or low is None or high is None:
        return ""
    return "H" if value > high else "L" if value < low else ""


@dataclass(frozen=True)
class DifferentialRow:
    cell_class: str
    label: str
    ai_count: int
    ai_percent: Decimal | None
    final_count: int
    final_percent: Decimal | None
    absolute: Decimal | None  # ×10⁹/L, from the final count's share and the WBC count
    reference: Reference | None = None

    @property
    def percent_flag(self) -> str:
        ref = self.reference
        return flag(self.final_percent, ref and ref.percent_low, ref and ref.percent_high)

    @property
    def absolute_flag(self) -> str:
        ref = self.reference
        return flag(self.absolute, ref and ref.absolute_low, ref and ref.absolute_high)


@dataclass(frozen=True)
class Differential:
    rows: list[DifferentialRow]
    ai_total: int
    final_total: int
    excluded: int
    unreviewed: int
    wbc_count: Decimal | None

    @property
    def reference_sources(self) -> list[str]:
        return sorted({r.reference.source for r in self.rows if r.reference})

    def as_dict(self) -> dict:
        def s(v):
            return None if v is None else str(v)

        return {
            "rows": [
                {
                    "class": r.cell_class, "label": r.label, "ai_count": r.ai_count, "ai_percent": s(r.ai_percent),
                    "final_count": r.final_count, "final_percent": s(r.final_percent), "absolute": s(r.absolute),
                    "percent_low": s(r.reference and r.reference.percent_low),
                    "percent_high": s(r.reference and r.reference.percent_high),
                    "absolute_low": s(r.reference and r.reference.absolute_low),
                    "absolute_high": s(r.reference and r.reference.absolute_high),
                    "percent_flag": r.percent_flag, "absolute_flag": r.absolute_flag,
                }
                for r in self.rows
            ],
            "ai_total": self.ai_total,
            "final_total": self.final_total,
            "excluded": self.excluded,
            "unreviewed": self.unreviewed,
            "wbc_count": s(self.wbc_count),
            "reference_sources": self.reference_sources,
        }


def differential(
    *, rows: list[CellRow], wbc_count: Decimal | None, ranges: dict[str, Reference] | None = None
) -> Differential:
    """Counts and % per class, AI vs final, absolute counts (×10⁹/L) when the WBC is known, and the
    final values flagged against the lab's reference ranges (``ranges``; default: the stored ones).

    AI: every classified cell by its predicted class. Final: the doctor's classes; excluded
    cells ("not classified") count in neither the numerator nor the denominator. Percentages are
    rounded by largest remainder, so that each column adds up to 100.0.
    """
    ranges = reference_ranges() if ranges is None else ranges
    ai = Counter(r.ai_class for r in rows if r.ai_class)
    final = Counter(r.final_class for r in rows if r.final_class and r.final_class != EXCLUDED)
    ai_total, final_total = sum(ai.values()), sum(final.values())
    ai_pct = percentages({c: ai[c] for c in CLASSES})
    fin_pct = percentages({c: final[c] for c in CLASSES})
    out = []
    for c in CLASSES:
        absolute = None
        if wbc_count is not None and final_total:
            absolute = _quantize(Decimal(wbc_count) * final[c] / final_total, "0.01")
        out.append(DifferentialRow(c, CLASS_LABELS[c], ai[c], ai_pct.get(c), final[c], fin_pct.get(c), absolute,
                                   ranges.get(c)))
    return Differential(
        rows=out,
        ai_total=ai_total,
        final_total=final_total,
        excluded=sum(1 for r in rows if r.final_class == EXCLUDED),
        unreviewed=sum(1 for r in rows if r.review is None),
        wbc_count=wbc_count,
    )


def result_snapshot(*, sample: Sample, rows: list[CellRow] | None = None) -> dict:
    """The result as it would be signed now: differential (with flags), cells, comments, what was
    examined and the model versions. The review page shows its hash (:func:`result_sha256`) and
    sends it back with the signature, so that a doctor signs only the result they saw."""
    rows = review_cells(sample=sample) if rows is None else rows
    diff = differential(rows=rows, wbc_count=sample.wbc_count)
    return {
        "accession_number": sample.accession_number,
        "patient": {"mrn": sample.patient.mrn, "name": sample.patient.full_name},
        "differential": diff.as_dict(),
        "sample_comment": sample.review_comment,
        "cells": [
            {
                "image_id": r.image.pk,
                "file": r.image.original_filename,
                "ai_class": r.ai_class,
                "confidence": r.prediction.confidence if r.prediction else None,
                "unidentified": bool(r.prediction and r.prediction.unidentified),
                "model_version": r.prediction.model_version.name if r.prediction else None,
                "final_class": r.final_class,
                "comment": r.review.comment if r.review else "",
                "reviewed_by": r.review.reviewed_by.get_printed_name() if r.review else None,
                "origin": r.image.origin,
                "field_id": r.image.field_id,
                "box": list(r.image.box) if r.image.box else None,
                "touches_edge": r.image.touches_edge,
            }
            for r in rows
        ],
        "examined": examined(sample=sample).as_dict(),
        "model_versions": sorted({r.prediction.model_version.name for r in rows if r.prediction}),
    }


def result_sha256(snapshot: dict) -> str:
    """The sha256 of a result snapshot's canonical JSON (what a signature stores as ``snapshot_sha256``)."""
    encoded = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class SignedRow:
    """One cell type of a signed result, as the report, the sample page and the signed version show it."""

    cell_class: str
    label: str
    count: int
    percent: str | None
    percent_flag: str
    absolute: str | None
    absolute_flag: str
    percent_range: str  # "40.0–80.0", or "" when the result was signed without one
    absolute_range: str
    ai_count: int
    ai_percent: str | None
    previous_percent: str | None = None  # the version this one amends
    previous_absolute: str | None = None

    @property
    def changed(self) -> bool:
        return (self.previous_percent, self.previous_absolute) != (self.percent, self.absolute)


@dataclass(frozen=True)
class SignedResult:
    signature: Signature
    previous: Signature | None  # the signed version an amendment replaces
    rows: list[SignedRow]
    counted: int  # cells in the differential
    excluded: int  # cells the reviewer excluded from it
    ai_total: int
    total_percent: str | None  # the sum of the printed percentages (100.0 since largest-remainder rounding)
    wbc_count: str | None
    reference_sources: list[str]
    minimum_count: dict | None  # {"required", "counted", "override_reason"} when signed below the minimum

    @property
    def examined(self) -> int:
        return self.counted + self.excluded


def _range(low: str | None, high: str | None) -> str:
    return f"{low}–{high}" if low is not None and high is not None else ""


def signed_result(*, signature: Signature) -> SignedResult:
    """A signed version's result from its snapshot (never from today's data), with the previous
    version's values beside it when it is an amendment. Snapshots signed before reference ranges
    existed show no ranges and no flags."""
    diff = signature.snapshot["differential"]
    previous = None
    if signature.is_amendment:
        previous = signature.sample.signatures.filter(version=signature.version - 1).first()
    before = {r["class"]: r for r in previous.snapshot["differential"]["rows"]} if previous else {}
    rows = [
        SignedRow(
            cell_class=r["class"], label=r["label"], count=r["final_count"], percent=r["final_percent"],
            percent_flag=r.get("percent_flag", ""), absolute=r["absolute"], absolute_flag=r.get("absolute_flag", ""),
            percent_range=_range(r.get("percent_low"), r.get("percent_high")),
            absolute_range=_range(r.get("absolute_low"), r.get("absolute_high")),
            ai_count=r["ai_count"], ai_percent=r["ai_percent"],
            previous_percent=before.get(r["class"], {}).get("final_percent"),
            previous_absolute=before.get(r["class"], {}).get("absolute"),
        )
        for r in diff["rows"]
    ]
    printed = [Decimal(r.percent) for r in rows if r.percent is not None]
    return SignedResult(
        signature=signature, previous=previous, rows=rows, counted=diff["final_total"], excluded=diff["excluded"],
        ai_total=diff["ai_total"], total_percent=str(sum(printed)) if printed else None, wbc_count=diff["wbc_count"],
        reference_sources=diff.get("reference_sources", []), minimum_count=signature.snapshot.get("minimum_count"),
    )


def signatures(*, sample: Sample) -> QuerySet[Signature]:
    return sample.signatures.select_related("signer").order_by("version")


def signature(*, sample: Sample, version: int | None = None) -> Signature | None:
    """The given signed version, or the latest one; None if there is none."""
    sigs = signatures(sample=sample)
    return sigs.filter(version=version).first() if version else sigs.last()


def signature_or_404(*, sample: Sample, version: int | None) -> Signature:
    """:func:`signature`, or ``Http404`` (pages and API alike) when there is no such signed version."""
    found = signature(sample=sample, version=version)
    if found is None:
        raise Http404("This sample has no signed result." if version is None else f"No signed version {version}.")
    return found


@dataclass
class Agreement:
    model_version: str
    matrix: dict[str, dict[str, int]]  # ai class → final class → count
    per_class: dict[str, float | None]  # share of cells of an AI class that the doctor kept
    total: int
    agreed: int
    served: bool = True  # False: the model's predictions made in shadow, which no reviewer saw

    @property
    def overall(self) -> float | None:
        return self.agreed / self.total if self.total else None


def agreement_by_model_version() -> list[Agreement]:
    """AI vs final over the cells of signed samples, one table per model version, and a separate
    one for a version's shadow predictions (never shown to the reviewers)."""
    qs = (
        Prediction.objects.filter(image__sample__status=SampleStatus.SIGNED, image__review__isnull=False)
        .values_list("model_version__name", "served", "predicted_class", "image__review__final_class")
    )
    by_version: dict[tuple[str, bool], Counter] = {}
    for version, served, ai, final in qs:
        by_version.setdefault((version, served), Counter())[(ai, final)] += 1
    out = []
    finals = [*CLASSES, EXCLUDED]
    for (version, served), counts in sorted(by_version.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        matrix = {a: {f: counts[(a, f)] for f in finals} for a in CLASSES}
        per_class = {}
        for a in CLASSES:
            n = sum(matrix[a].values())
            per_class[a] = matrix[a][a] / n if n else None
        total = sum(counts.values())
        agreed = sum(counts[(a, a)] for a in CLASSES)
        out.append(Agreement(version, matrix, per_class, total, agreed, served))
    return out


@dataclass
class ShadowEvidence:
    """A shadow model and the served one on the same cells, both against the doctors' final labels."""

    shadow_version: str
    served_versions: list[str]
    cells: int  # cells of signed samples that both classified (excluded cells left out)
    served_agreed: int
    shadow_agreed: int
    per_class: dict[str, dict[str, int]]  # final class → {"cells", "served", "shadow"} agreed

    @property
    def served_rate(self) -> float | None:
        return self.served_agreed / self.cells if self.cells else None

    @property
    def shadow_rate(self) -> float | None:
        return self.shadow_agreed / self.cells if self.cells else None


def shadow_evidence() -> list[ShadowEvidence]:
    """Per version that ran in shadow: its suggestions and the served model's on the same cells of
    signed samples, each counted against the doctor's final class, as the evidence grows."""
    shadow = (
        Prediction.objects.filter(
            served=False, image__sample__status=SampleStatus.SIGNED, image__review__isnull=False
        )
        .exclude(image__review__final_class=EXCLUDED)
        .values_list("image_id", "model_version__name", "predicted_class", "image__review__final_class")
    )
    rows = list(shadow)
    served = {
        image_id: (version, ai)
        for image_id, version, ai in Prediction.objects.filter(
            served=True, image_id__in=[r[0] for r in rows]
        ).order_by("created_at", "pk").values_list("image_id", "model_version__name", "predicted_class")
    }  # the newest served prediction of each image wins, as in the review
    by_version: dict[str, ShadowEvidence] = {}
    for image_id, version, ai, final in rows:
        if image_id not in served:
            continue
        served_version, served_ai = served[image_id]
        ev = by_version.setdefault(version, ShadowEvidence(version, [], 0, 0, 0, {}))
        if served_version not in ev.served_versions:
            ev.served_versions.append(served_version)
        ev.cells += 1
        ev.served_agreed += served_ai == final
        ev.shadow_agreed += ai == final
        row = ev.per_class.setdefault(final, {"cells": 0, "served": 0, "shadow": 0})
        row["cells"] += 1
        row["served"] += served_ai == final
        row["shadow"] += ai == final
    return [by_version[v] for v in sorted(by_version)]


def confirmed_cells() -> QuerySet[CellImage]:
    """Cells a doctor gave a final class (not excluded) in signed samples: the retraining set."""
    return (
        CellImage.objects.filter(sample__status=SampleStatus.SIGNED, review__isnull=False)
        .exclude(review__final_class=EXCLUDED)
        .select_related("review", "sample")
    )


# Whole fields ---------------------------------------------------------------


@dataclass(frozen=True)
class Examined:
    """How much of the sample was looked at: what the differential and the report state."""

    fields: int  # whole fields uploaded and analysed (failed ones not counted)
    fields_without_white_cells: int
    fields_failed: int
    cells: int  # cells in the differential's denominator pool: classified, not rejected
    cells_from_fields: int
    cells_rejected: int  # detections a doctor rejected as not a white cell
    cells_added: int  # white cells a doctor marked that the detector missed

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def examined(*, sample: Sample) -> Examined:
    fields = dict(sample.fields.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    blank = sample.fields.filter(status=FieldStatus.DETECTED, white_cells_found=0).count()
    images = sample.images.filter(status=ImageStatus.CLASSIFIED)
    live = images.filter(rejected_at__isnull=True)
    return Examined(
        fields=fields.get(FieldStatus.DETECTED, 0),
        fields_without_white_cells=blank,
        fields_failed=fields.get(FieldStatus.FAILED, 0),
        cells=live.count(),
        cells_from_fields=live.filter(field__isnull=False).count(),
        cells_rejected=sample.images.filter(rejected_at__isnull=False).count(),
        cells_added=sample.images.filter(origin=CellOrigin.ADDED, rejected_at__isnull=True).count(),
    )


def sample_fields(*, sample: Sample) -> QuerySet[Field]:
    """The sample's fields, oldest first, with how many of their cells are live (not rejected)."""
    return sample.fields.select_related("uploaded_by").annotate(
        cell_count=Count("cells", filter=Q(cells__rejected_at__isnull=True)),
        rejected_count=Count("cells", filter=Q(cells__rejected_at__isnull=False)),
    ).order_by("uploaded_at", "pk")


def field_cells(*, field: Field) -> list[CellRow]:
    """Every cell cut from ``field`` (rejected ones and those not yet classified included), each
    with its newest prediction and review: the boxes the field view draws."""
    images = images_with_latest_prediction(
        field.cells.select_related("review", "review__reviewed_by", "rejected_by", "added_by")
    ).order_by("pk")
    return [
        CellRow(image=img, prediction=latest_prediction(image=img), review=getattr(img, "review", None))
        for img in images
    ]


@dataclass(frozen=True)
class DetectionAgreement:
    """The detector vs the doctors over the fields of signed samples, for one detector and month."""

    detector: str
    period: datetime.date  # first day of the month the fields were uploaded
    fields: int
    detected: int  # white cells the detector found
    rejected: int  # ... that a doctor rejected: false positives
    added: int  # white cells a doctor added: misses

    @property
    def kept(self) -> int:
        return self.detected - self.rejected

    @property
    def precision(self) -> float | None:
        return self.kept / self.detected if self.detected else None

    @property
    def recall(self) -> float | None:
        found = self.kept + self.added
        return self.kept / found if found else None


def detection_agreement() -> list[DetectionAgreement]:
    """Detections kept, rejected (false positives) and added (misses) by the doctors, over the
    detected fields of signed samples, per detector and month, newest first."""
    signed = Field.objects.filter(sample__status=SampleStatus.SIGNED, status=FieldStatus.DETECTED)
    rows = (
        signed.annotate(period=TruncMonth("uploaded_at"))
        .values("detector", "period")
        .annotate(
            fields=Count("pk", distinct=True),
            detected=Count("cells", filter=Q(cells__origin=CellOrigin.DETECTED), distinct=True),
            rejected=Count(
                "cells", filter=Q(cells__origin=CellOrigin.DETECTED, cells__rejected_at__isnull=False), distinct=True
            ),
            added=Count(
                "cells", filter=Q(cells__origin=CellOrigin.ADDED, cells__rejected_at__isnull=True), distinct=True
            ),
        )
        .order_by("-period", "detector")
    )
    return [
        DetectionAgreement(
            detector=r["detector"], period=r["period"].date() if hasattr(r["period"], "date") else r["period"],
            fields=r["fields"], detected=r["detected"], rejected=r["rejected"], added=r["added"],
        )
        for r in rows
    ]
