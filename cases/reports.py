"""The signed result as a PDF report (ReportLab) and as FHIR R4 JSON for a LIS."""
from __future__ import annotations

import io
import uuid
from decimal import Decimal
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from .models import Sample, Signature

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

    rows = [["Cell type", "Count", "%", "Absolute (×10^9/L)", "AI count", "AI %"]]
    for r in diff["rows"]:
        rows.append([r["label"], r["final_count"], r["final_percent"] or "—", r["absolute"] or "—",
                     r["ai_count"], r["ai_percent"] or "—"])
    total_pct = "100.0" if diff["final_total"] else "—"
    rows.append(["Total counted", diff["final_total"], total_pct, "", diff["ai_total"], ""])
    dt = Table(rows, colWidths=[40 * mm, 22 * mm, 20 * mm, 36 * mm, 24 * mm, 20 * mm])
    dt.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black), ("LINEABOVE", (0, -1), (-1, -1), 0.4, colors.grey),
        ("TEXTCOLOR", (4, 0), (5, -1), colors.grey),
    ]))
    story.append(dt)
    if diff["excluded"]:
        story.append(Paragraph(f"{diff['excluded']} cell image(s) excluded by the reviewer.", styles["Normal"]))
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

    def obs(code, value, unit, ucum_code):
        oid = uuid.uuid5(uuid.NAMESPACE_URL, f"hv/{sample.accession_number}/v{signature.version}/{code[0]}")
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
            },
        })

    if diff["wbc_count"] is not None:
        obs(LOINC_WBC, _decimal(diff["wbc_count"]), "10*9/L", "10*9/L")
    for r in diff["rows"]:
        if r["final_percent"] is not None:
            obs(LOINC_PERCENT[r["class"]], _decimal(r["final_percent"]), "%", "%")
        if r["absolute"] is not None:
            obs(LOINC_ABSOLUTE[r["class"]], _decimal(r["absolute"]), "10*9/L", "10*9/L")

    report_id = uuid.uuid5(uuid.NAMESPACE_URL, f"hv/{sample.accession_number}/v{signature.version}")
    conclusion = snap.get("sample_comment") or ""
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
