"""The signed result as a PDF report (ReportLab) and as FHIR R4 JSON for a LIS."""
from __future__ import annotations

import io
import uuid
from decimal import Decimal
from xml.sax.saxutils import escape

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from cases.downloads import patient_data_response
from cases.models import Sample

from .models import Signature
from .selectors import SignedResult, signed_result

# LOINC (method-less terms of the 24318-8 Manual Differential panel - Blood).
LOINC_PANEL = ("24318-8", "Manual Differential panel - Blood")
LOINC_WBC = ("26464-8", "Leukocytes [#/volume] in Blood")
LOINC_PERCENT = {
    "EOSINOPHIL": ("26450-7", "Eosinophils/100 leukocytes in Blood"),
    "LYMPHOCYTE": ("26478-8", "Lymphocytes/100 leukocytes in Blood"),
    "MONOCYTE": ("26485-3", "Monocytes/100 leukocytes in Blood"),
    "NEUTROPHIL": ("26511-6", "Neutrophils/100 leukocytes in Blood"),
    "BASOPHIL": ("30180-4", "Basophils/100 leukocytes in Blood"),
}
LOINC_ABSOLUTE = {
    "EOSINOPHIL": ("26449-9", "Eosinophils [#/volume] in Blood"),
    "LYMPHOCYTE": ("26474-7", "Lymphocytes [#/volume] in Blood"),
    "MONOCYTE": ("26484-6", "Monocytes [#/volume] in Blood"),
    "NEUTROPHIL": ("26499-4", "Neutrophils [#/volume] in Blood"),
    "BASOPHIL": ("26444-0", "Basophils [#/volume] in Blood"),
}
LOINC_SYSTEM = "http://loinc.org"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_DISPLAY = {"H": "High", "L": "Low"}
UCUM = "http://unitsofmeasure.org"


def _fmt(dt) -> str:
    return timezone.localtime(dt).strftime("%Y-%m-%d %H:%M") if dt else "—"


def render_pdf(*, sample: Sample, signature: Signature) -> bytes:
    """A one-page A4 report of ``signature``'s snapshot (the exact result that was signed)."""
    snap = signature.snapshot
    diff = snap["differential"]
    styles = getSampleStyleSheet()
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
        title=f"WBC differential {sample.accession_number}", author=settings.LAB_NAME,
    )
    # A Paragraph reads its text as ReportLab markup (<img src>, <a href>, fonts): every value put
    # into one is escaped, so a file name or comment is printed as typed, never obeyed.
    story = [Paragraph(escape(settings.LAB_NAME), styles["Title"])]
    heading = "White blood cell differential report"
    if signature.is_amendment:
        heading += f" — AMENDED (version {signature.version})"
    story.append(Paragraph(heading, styles["Heading2"]))
    patient = sample.patient
    facts = [
        ["Patient", f"{patient.full_name}", "MRN", patient.mrn],
        ["Date of birth", patient.date_of_birth.isoformat(), "Sex", patient.get_sex_display()],
        ["Accession number", sample.accession_number, "Priority", sample.get_priority_display()],
        ["Specimen", f"{sample.get_specimen_type_display()}, {sample.get_stain_display()}", "", ""],
        ["Collected", _fmt(sample.collected_at), "Received", _fmt(sample.received_at)],
        ["Report date", _fmt(signature.signed_at), "WBC count",
         f"{diff['wbc_count']} ×10^9/L" if diff["wbc_count"] else "not provided"],
    ]
    t = Table(facts, colWidths=[32 * mm, 60 * mm, 28 * mm, 54 * mm])
    t.setStyle(TableStyle([("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"),
                           ("FONTNAME", (2, 0), (2, -1), "Helvetica-Bold"),
                           ("FONTSIZE", (0, 0), (-1, -1), 9)]))
    story += [t, Spacer(1, 6 * mm), Paragraph("Differential", styles["Heading3"])]

    story += differential_story(result=signed_result(signature=signature), styles=styles)
    if (snap.get("examined") or {}).get("fields"):  # cells alone: the counts above say it all
        story.append(Paragraph(escape(examined_sentence(snap["examined"], diff["final_total"])), styles["Normal"]))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("Comments", styles["Heading3"]))
    story.append(Paragraph(escape(snap.get("sample_comment") or "None."), styles["Normal"]))
    for cell in snap["cells"]:
        if cell.get("comment"):
            story.append(Paragraph(escape(f"Cell {cell['file']}: {cell['comment']}"), styles["Normal"]))
    story.append(Spacer(1, 4 * mm))
    models_used = escape(", ".join(snap["model_versions"]) or "—")
    story.append(Paragraph(
        f"Pre-classified by model {models_used}; every cell verified by the signer.",
        styles["Normal"],
    ))
    if signature.is_amendment:
        story.append(Paragraph(escape(f"AMENDED. Reason: {signature.amendment_reason}"), styles["Normal"]))
    story.append(Paragraph(
        escape(f"Electronically signed by {signature.printed_name} on {_fmt(signature.signed_at)} "
               f"— meaning: {signature.get_meaning_display()}."),
        styles["Heading4"],
    ))
    story.append(Paragraph(f"Signature record {signature.snapshot_sha256[:16]}", styles["Normal"]))
    doc.build(story)
    return buf.getvalue()


def _flagged(value: str | None, flag: str) -> str:
    return "—" if value is None else f"{value} {flag}".strip()


def differential_story(*, result: SignedResult, styles) -> list:
    """The differential table of a signed result: count, % and absolute with H/L flags against the
    adult reference ranges it was signed with, the AI's counts, and on an amendment the previous
    version's values; then the cells examined and excluded, and any count below the lab's minimum."""
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, leading=10)
    amended = result.previous is not None
    header = ["Cell type", "Count", "%", "Ref. %", "×10^9/L", "Ref. ×10^9/L", "AI n", "AI %"]
    widths = [26, 12, 15, 20, 17, 22, 11, 13]
    if amended:
        header += [f"v{result.previous.version} %", f"v{result.previous.version} ×10^9/L"]
        widths += [17, 19]
    rows = [header]
    for r in result.rows:
        row = [r.label, r.count, _flagged(r.percent, r.percent_flag), r.percent_range or "—",
               _flagged(r.absolute, r.absolute_flag), r.absolute_range or "—", r.ai_count, r.ai_percent or "—"]
        if amended:
            row += [r.previous_percent or "—", r.previous_absolute or "—"]
        rows.append(row)
    # The printed total is the sum of the printed percentages (largest-remainder rounding makes it 100.0).
    total = ["Total counted", result.counted, result.total_percent or "—", "", "", "", result.ai_total, ""]
    rows.append(total + (["", ""] if amended else []))
    table = Table(rows, colWidths=[w * mm for w in widths])
    style = [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black), ("LINEABOVE", (0, -1), (-1, -1), 0.4, colors.grey),
        ("TEXTCOLOR", (6, 0), (7, -1), colors.grey),
    ]
    for i, r in enumerate(result.rows, start=1):
        for col, flag in ((2, r.percent_flag), (4, r.absolute_flag)):
            if flag:
                style.append(("FONTNAME", (col, i), (col, i), "Helvetica-Bold"))
    table.setStyle(TableStyle(style))
    story = [table, Spacer(1, 2 * mm)]
    notes = ["H: above, L: below the reference range."]
    if result.reference_sources:
        notes.append("Reference ranges (adults): " + "; ".join(result.reference_sources))
    else:
        notes.append("Signed before reference ranges were kept: no flags.")
    story.append(Paragraph(escape(" ".join(notes)), small))
    story.append(Paragraph(escape(
        f"Cells examined: {result.examined}; counted in the differential: {result.counted}; "
        f"excluded by the reviewer: {result.excluded}."), styles["Normal"]))
    if result.minimum_count:
        m = result.minimum_count
        story.append(Paragraph(escape(
            f"Counted {m['counted']} cell(s), below the laboratory's minimum of {m['required']}. "
            f"Reason given by the signer: {m['override_reason']}"), styles["Normal"]))
    if amended:
        prev = result.previous
        story.append(Paragraph(escape(
            f"Amended result. Previous values: version {prev.version}, signed by {prev.printed_name} "
            f"on {_fmt(prev.signed_at)} (columns v{prev.version})."), styles["Normal"]))
    return story


def examined_sentence(examined: dict | None, counted: int) -> str:
    """What the count rests on, e.g. "Examined: 3 whole fields (1 without white cells) and 12 cells;
    2 detections rejected by the reviewer." Snapshots signed before whole fields existed have no
    ``examined``: their cells were all uploaded one by one."""
    if not examined:
        return f"Examined: {counted} cell image(s)."
    text = f"Examined: {examined['cells']} cell(s)"
    if examined["fields"]:
        text = (
            f"Examined: {examined['fields']} whole field(s)"
            f" ({examined['fields_without_white_cells']} without white cells)"
            f" and {examined['cells']} cell(s), {examined['cells_from_fields']} of them found in the fields"
        )
    extras = []
    if examined["cells_added"]:
        extras.append(f"{examined['cells_added']} added by the reviewer")
    if examined["cells_rejected"]:
        extras.append(f"{examined['cells_rejected']} detection(s) rejected by the reviewer")
    if examined.get("fields_failed"):
        extras.append(f"{examined['fields_failed']} field(s) could not be analysed")
    return text + ("; " + "; ".join(extras) if extras else "") + "."


def _decimal(v: str | None) -> float | None:
    return None if v is None else float(Decimal(v))


def fhir_diagnostic_report(*, sample: Sample, signature: Signature) -> dict:
    """FHIR R4 Bundle (collection): a DiagnosticReport plus one Observation per result."""
    snap = signature.snapshot
    diff = snap["differential"]
    patient = sample.patient
    issued = signature.signed_at.isoformat()
    effective = sample.collected_at.isoformat()
    patient_ref = {"reference": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'patient/' + patient.mrn)}",
                   "display": patient.full_name}
    status = "amended" if signature.is_amendment else "final"
    observations = []

    def obs(code, value, unit, ucum_code, flag="", low=None, high=None):
        oid = uuid.uuid5(uuid.NAMESPACE_URL, f"hv/{sample.accession_number}/v{signature.version}/{code[0]}")
        extra = {}
        if flag:
            extra["interpretation"] = [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": flag,
                                                    "display": INTERPRETATION_DISPLAY[flag]}], "text": flag}]
        if low is not None and high is not None:
            extra["referenceRange"] = [{
                "low": {"value": _decimal(low), "unit": unit, "system": UCUM, "code": ucum_code},
                "high": {"value": _decimal(high), "unit": unit, "system": UCUM, "code": ucum_code},
                "appliesTo": [{"text": "Adults"}],
                "text": f"{low}–{high} {unit} (adults)",
            }]
        observations.append({
            "fullUrl": f"urn:uuid:{oid}",
            "resource": {
                "resourceType": "Observation",
                "id": str(oid),
                "status": status,
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory", "display": "Laboratory"}]}],
                "code": {"coding": [{"system": LOINC_SYSTEM, "code": code[0], "display": code[1]}], "text": code[1]},
                "subject": patient_ref,
                "effectiveDateTime": effective,
                "issued": issued,
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum_code},
                **extra,
            },
        })

    if diff["wbc_count"] is not None:
        obs(LOINC_WBC, _decimal(diff["wbc_count"]), "10*9/L", "10*9/L")
    for r in diff["rows"]:
        # Flags and ranges as signed (snapshots from before reference ranges have neither).
        if r["final_percent"] is not None:
            obs(LOINC_PERCENT[r["class"]], _decimal(r["final_percent"]), "%", "%",
                r.get("percent_flag", ""), r.get("percent_low"), r.get("percent_high"))
        if r["absolute"] is not None:
            obs(LOINC_ABSOLUTE[r["class"]], _decimal(r["absolute"]), "10*9/L", "10*9/L",
                r.get("absolute_flag", ""), r.get("absolute_low"), r.get("absolute_high"))

    report_id = uuid.uuid5(uuid.NAMESPACE_URL, f"hv/{sample.accession_number}/v{signature.version}")
    conclusion = snap.get("sample_comment") or ""
    examined = snap.get("examined")
    if examined:  # every Observation is a LOINC result; what the count rests on is stated here
        conclusion = (conclusion + " " + examined_sentence(examined, diff["final_total"])).strip()
    minimum = snap.get("minimum_count")
    if minimum:
        conclusion = (conclusion + f" Counted {minimum['counted']} cell(s), below the laboratory's minimum of "
                      f"{minimum['required']}; reason: {minimum['override_reason']}").strip()
    if signature.is_amendment:
        conclusion = (conclusion + f" Amended: {signature.amendment_reason}").strip()
    report = {
        "resourceType": "DiagnosticReport",
        "id": str(report_id),
        "identifier": [{"system": "urn:hematovision:accession", "value": sample.accession_number}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM",
                                  "display": "Hematology"}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": LOINC_PANEL[0], "display": LOINC_PANEL[1]}],
                 "text": "White blood cell differential (AI-assisted, verified)"},
        "subject": patient_ref,
        "effectiveDateTime": effective,
        "issued": issued,
        "performer": [{"display": settings.LAB_NAME}],
        "resultsInterpreter": [{"display": signature.printed_name}],
        "result": [{"reference": o["fullUrl"]} for o in observations],
        "conclusion": conclusion or None,
    }
    report = {k: v for k, v in report.items() if v is not None}
    patient_resource = {
        "fullUrl": patient_ref["reference"],
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:hematovision:mrn", "value": patient.mrn}],
            "name": [{"family": patient.family_name, "given": [patient.given_name]}],
            "birthDate": patient.date_of_birth.isoformat(),
            "gender": {"F": "female", "M": "male", "O": "other"}.get(patient.sex, "unknown"),
        },
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": issued,
        "entry": [{"fullUrl": f"urn:uuid:{report_id}", "resource": report}, patient_resource, *observations],
    }


# Downloads (the one audited helper of ``cases.downloads``) ----------------------------


def report_pdf_response(*, actor, sample: Sample, signature: Signature) -> HttpResponse:
    """The PDF report of ``signature`` (a signed version of ``sample``)."""
    return patient_data_response(
        actor=actor, subject=sample, what=f"PDF report v{signature.version}",
        content=render_pdf(sample=sample, signature=signature), content_type="application/pdf",
        filename=f"{sample.accession_number}-v{signature.version}.pdf", as_attachment=True,
    )


def fhir_response(*, actor, sample: Sample, signature: Signature) -> HttpResponse:
    """The FHIR R4 Bundle of ``signature`` (a signed version of ``sample``)."""
    bundle = fhir_diagnostic_report(sample=sample, signature=signature)
    return patient_data_response(
        actor=actor, subject=sample, what=f"FHIR export v{signature.version}",
        content=DjangoJSONEncoder().encode(bundle).encode(), content_type="application/fhir+json",
        filename=f"{sample.accession_number}-v{signature.version}.fhir.json", as_attachment=True,
    )
