"""A finished prediction's report: the facts once, rendered as a PDF (ReportLab) and as FHIR R4 (fhir.resources).

``current_report(prediction)`` returns the report for the prediction as it stands: version 1 is
written the first time it is asked for, and when a review has been recorded (or changed) since
the last version, a new version is written; every earlier version stays retrievable as it was.
A version's PDF is saved with its sha256 on the row, and the picture in it is drawn only from an
X-ray and a heatmap that passed their integrity check (``integrity.py``): a changed one raises
``StoredFileChanged`` and no version is written.
"""

import io
import logging
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from ml.decode import decode_image

from .integrity import open_verified, sha256_hex
from .models import Prediction, Report

log = logging.getLogger(__name__)

DISCLAIMER = "Decision support, not a diagnosis. A clinician makes the diagnosis."
SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
FINDINGS = {  # SNOMED CT codes of what the label says
    "PNEUMONIA": {"system": SNOMED, "code": "233604007", "display": "Pneumonia"},
    "NORMAL": {"system": SNOMED, "code": "17621005", "display": "Normal"},
}
SUBTYPES = {  # SNOMED CT codes of the secondary bacterial / viral output
    "bacterial": {"system": SNOMED, "code": "53084003", "display": "Bacterial pneumonia"},
    "viral": {"system": SNOMED, "code": "75570004", "display": "Viral pneumonia"},
}
GENDERS = {"F": "female", "M": "male", "O": "other", "U": "unknown"}


class NoReport(Exception):
    """The prediction has no outcome to report (queued, running, failed or cancelled)."""


@dataclass
class Facts:
    """Everything a report says, in one place for the PDF and the FHIR resource alike."""

    prediction_id: int
    version: int
    generated_at: str
    patient_name: str
    mrn: str
    sex: str
    date_of_birth: str
    age_years: str
    study_date: str
    view: str
    status: str
    label: str
    probability: float
    threshold: float
    population: str
    warnings: list
    borderline: bool
    ood_reason: str
    model_name: str
    model_sha256: str
    review: dict = field(default_factory=dict)
    subtype: str = ""
    subtype_probability: float = None
    subtype_validation: dict = field(default_factory=dict)
    operating_point: str = ""  # "site operating point of <date> (#id)" or "the model card's operating point"

    @property
    def refused(self):
        return self.status == Prediction.Status.REJECTED

    def subtype_text(self):
        """The secondary output in words, with its own validation figure; "" when none was given, or when a
        reviewer's verdict made the result NORMAL (a pneumonia pattern then means nothing)."""
        final = (self.review.get("label") if self.review else "") or self.label
        if not self.subtype or self.subtype_probability is None or final != "PNEUMONIA":
            return ""
        v = self.subtype_validation or {}
        figure = f"validation AUC {v['auc']:.3f}" if v.get("auc") is not None else "validation figure unrecorded"
        if v.get("ci95"):
            figure += f" [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
        ages = v.get("validated_ages")
        where = f"children {ages[0]:g}–{ages[1]:g} years" if ages else "the ages it was validated on"
        return (f"Secondary, not a diagnosis: {self.subtype} pattern more likely (P {self.subtype_probability:.2f}; "
                f"{figure} in {where}).")

    def conclusion(self):
        if self.refused:
            return ("No answer: the image is not a chest X-ray the model was validated on "
                    f"({self.ood_reason})")
        text = (f"AI result: {self.label}, P(pneumonia) {self.probability:.3f} at the {self.population or 'single'} "
                f"operating point (screening threshold {self.threshold:.3f}; {self.operating_point}).")
        if self.borderline:
            text += " Borderline: close to the threshold, review."
        if self.review:
            verdict = "agrees" if self.review["verdict"] == "agree" else "disagrees"
            final = self.review.get("label") or self.label
            text += f" Reviewer {self.review['reviewer']} {verdict}: {final}."
        if subtype := self.subtype_text():
            text += " " + subtype
        return text


def review_state(prediction):
    if not prediction.is_reviewed:
        return {}
    return {"verdict": prediction.review_verdict, "label": prediction.review_label,
            "comment": prediction.review_comment,
            "reviewer": prediction.reviewed_by.get_username() if prediction.reviewed_by else "",
            "reviewed_at": prediction.reviewed_at.isoformat() if prediction.reviewed_at else ""}


def facts_of(prediction, version, review, now):
    study, patient = prediction.study, prediction.study.patient
    return Facts(
        prediction_id=prediction.pk, version=version, generated_at=now.isoformat(timespec="seconds"),
        patient_name=patient.name, mrn=patient.mrn, sex=patient.sex,
        date_of_birth=patient.date_of_birth.isoformat() if patient.date_of_birth else "",
        age_years="" if study.age_years is None else str(study.age_years), study_date=study.uploaded_at.isoformat(timespec="seconds"),
        view=study.get_view_display(), status=prediction.status, label=prediction.label,
        probability=prediction.probability, threshold=prediction.threshold, population=prediction.population,
        borderline=prediction.borderline,
        warnings=list(prediction.warnings), ood_reason=prediction.ood_reason, model_name=prediction.model_name,
        model_sha256=prediction.model_sha256, review=review, subtype=prediction.subtype,
        subtype_probability=prediction.subtype_probability, subtype_validation=dict(prediction.subtype_validation),
        operating_point=prediction.operating_point,
    )


def current_report(prediction):
    """The latest report version, written first if none exists or the review changed since."""
    if prediction.status not in Prediction.OUTCOMES:
        raise NoReport(f"The prediction is {prediction.status}: there is no result to report yet.")
    review = review_state(prediction)
    latest = prediction.reports.order_by("-version").first()
    if latest is not None and latest.review_state == review:
        return latest
    version = (latest.version if latest else 0) + 1
    now = timezone.now()
    facts = facts_of(prediction, version, review, now)
    try:
        picture = overlay_image(prediction)
    except FileNotFoundError:
        log.error("Prediction %s: its X-ray or heatmap file is missing; no report written", prediction.pk)
        raise NoReport("The X-ray or heatmap file of this prediction is missing, so no report can be written; "
                       "an administrator has been told (manage.py verify_files).") from None
    pdf = render_pdf(facts, picture)
    report = Report(prediction=prediction, version=version, created_at=now, review_state=review,
                    fhir=fhir_report(facts, amended=latest is not None), pdf_sha256=sha256_hex(pdf))
    report.pdf.save(f"v{version}.pdf", ContentFile(pdf), save=False)
    try:
        with transaction.atomic():
            report.save()
    except IntegrityError:  # another request wrote this version at the same moment: theirs stands
        report.pdf.delete(save=False)
        existing = prediction.reports.filter(version=version).first()
        if existing is None:  # not a race: the prediction itself was erased meanwhile
            raise NoReport("This prediction no longer exists.") from None
        return existing
    except BaseException:
        report.pdf.delete(save=False)
        raise
    return report


def overlay_picture(prediction, max_side=None):
    """The X-ray (RGB, at most ``max_side`` pixels a side) with the combined heatmap over it where the map
    stands for evidence of pneumonia (``Prediction.shows_heatmap``); else the X-ray alone. The one picture of
    the PDF and of the DICOM secondary capture (pacs/exports.py), from files that passed their integrity check."""
    with open_verified(prediction.study, "image") as fh:
        xray = decode_image(fh, max_pixels=10**9, min_side=1)
    if max_side:
        xray.thumbnail((max_side, max_side))
    picture = xray.convert("RGBA")
    if prediction.shows_heatmap:
        with open_verified(prediction, "heatmap") as fh:
            heat = Image.open(fh).convert("RGBA").resize(picture.size, Image.Resampling.BILINEAR)
        picture = Image.alpha_composite(picture, heat)
    return picture.convert("RGB")


def overlay_image(prediction):
    """PNG bytes of the report's picture (:func:`overlay_picture`, 640 px a side at most)."""
    buffer = io.BytesIO()
    overlay_picture(prediction, max_side=640).save(buffer, format="PNG")
    return buffer.getvalue()


# --- PDF ---------------------------------------------------------------------------------------


def render_pdf(facts, picture_png):
    """The report as an A4 PDF: compact type and spacing so that a usual report fits on one page."""
    # Imported here: ReportLab costs a web process 0.27 s and 17 MB, and most never write a report (measured as
    # for matplotlib in core/charts.py: perf_counter and ru_maxrss around the import, fresh interpreter).
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Image as PdfImage
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    # Smaller than ReportLab's samples (Title 18 pt, Heading2 14 pt, body 10 pt): one page, still easy to read.
    compact = {
        "Title": ParagraphStyle("ReportTitle", parent=styles["Title"], fontSize=15, leading=18, spaceAfter=4),
        "Heading2": ParagraphStyle("ReportHeading", parent=styles["Heading2"], fontSize=11.5, leading=14,
                                   spaceBefore=4, spaceAfter=3),
        "Heading3": ParagraphStyle("ReportSubheading", parent=styles["Heading3"], fontSize=10.5, leading=13,
                                   spaceBefore=3, spaceAfter=2),
        "BodyText": ParagraphStyle("ReportBody", parent=styles["BodyText"], fontSize=9, leading=11.5, spaceBefore=1,
                                   spaceAfter=1),
        "Italic": ParagraphStyle("ReportCaption", parent=styles["Italic"], fontSize=8.5, leading=10.5,
                                 alignment=1),
        "Cell": ParagraphStyle("ReportCell", parent=styles["BodyText"], fontSize=9.5, leading=11.5, spaceBefore=0,
                               spaceAfter=0),
    }
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, title=f"PneumoWeb report {facts.prediction_id} v{facts.version}",
                                 author="PneumoWeb", leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.5 * cm,
                                 bottomMargin=1.5 * cm)

    def p(text, style="BodyText"):
        return Paragraph(escape(str(text)), compact[style])

    def table(rows):
        # splitInRow: a cell taller than a page (a long review comment) continues on the next one.
        t = Table([[p(k, "Cell"), p(v, "Cell")] for k, v in rows], colWidths=[5 * cm, 12 * cm], splitInRow=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                               ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
        return t

    def gap(height=0.2):
        return Spacer(1, height * cm)

    story = [p("Chest X-ray: AI decision-support report", "Title"),
             p(f"Prediction {facts.prediction_id} · report version {facts.version} · generated {facts.generated_at}"),
             gap(), p("Patient", "Heading2"),
             table([("Name", facts.patient_name), ("MRN", facts.mrn), ("Sex", GENDERS.get(facts.sex, facts.sex)),
                    ("Date of birth", facts.date_of_birth or "not recorded"), ("Age at study", f"{facts.age_years} years" if facts.age_years else "unknown"),
                    ("Study date", facts.study_date), ("View", facts.view)]),
             gap(), p("Result", "Heading2")]
    if facts.refused:
        story.append(p("Not a chest X-ray the model was validated on: no PNEUMONIA/NORMAL answer is given.",
                       "Heading3"))
        story.append(table([("Why", facts.ood_reason)]))
    else:
        story.append(p(f"{facts.label}" + (" — borderline, review" if facts.borderline else ""), "Heading3"))
        rows = [("P(pneumonia), calibrated", f"{facts.probability:.3f}"),
                ("Operating point", f"{facts.population or 'single'}: screening threshold {facts.threshold:.3f} "
                                    f"({facts.operating_point}); results at or above it are flagged PNEUMONIA")]
        if subtype := facts.subtype_text():
            rows.append(("Bacterial or viral (secondary)", subtype))
        story.append(table(rows))
    if facts.warnings:
        story += [gap(0.1), p("Intended-use warnings", "Heading3")] + [p(f"• {w}") for w in facts.warnings]
    caption = "The X-ray" + ("" if facts.refused else " with where the model found evidence for the label: "
                                                      "not a lesion outline")
    image = PdfImage(io.BytesIO(picture_png))
    scale = min(6 * cm / image.imageWidth, 6 * cm / image.imageHeight)
    image.drawWidth, image.drawHeight = image.imageWidth * scale, image.imageHeight * scale
    # The picture and its caption stay together: a caption alone at the top of a page says nothing.
    story += [gap(), KeepTogether([image, p(caption, "Italic")]), gap(), p("Model", "Heading2"),
              table([("Name", facts.model_name), ("Weights sha256", facts.model_sha256)]),
              gap(), p("Review", "Heading2")]
    if facts.review:
        story.append(table([("Verdict", facts.review["verdict"]), ("Corrected label", facts.review["label"] or "—"),
                            ("Comment", facts.review["comment"] or "—"), ("Reviewer", facts.review["reviewer"]),
                            ("Reviewed at", facts.review["reviewed_at"])]))
    else:
        story.append(p("Not reviewed."))
    story += [gap(0.3), p(DISCLAIMER, "Heading3")]
    document.build(story)
    return buffer.getvalue()


# --- FHIR R4 -----------------------------------------------------------------------------------


def fhir_report(facts, *, amended=False):
    """A FHIR R4 DiagnosticReport with its Observation, Patient and Device contained, validated with fhir.resources."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport  # 0.39 s, 26 MB: only when a report is written

    status = "final" if facts.review else "preliminary"
    if amended and facts.review:
        status = "amended"
    patient = {"resourceType": "Patient", "id": "patient",
               "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                    "code": "MR"}]}, "value": facts.mrn}],
               "name": [{"text": facts.patient_name}], "gender": GENDERS.get(facts.sex, "unknown")}
    if facts.date_of_birth:
        patient["birthDate"] = facts.date_of_birth
    device = {"resourceType": "Device", "id": "device", "deviceName": [{"name": facts.model_name, "type": "model-name"}],
              "version": [{"value": facts.model_sha256}], "type": {"text": "AI decision-support software"}}
    observation = {
        "resourceType": "Observation", "id": "observation", "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "imaging"}]}],
        "code": {"coding": [FINDINGS["PNEUMONIA"]], "text": "AI-estimated probability of pneumonia"},
        "subject": {"reference": "#patient"}, "device": {"reference": "#device"},
        "effectiveDateTime": facts.study_date,
        "note": [{"text": warning} for warning in facts.warnings] or None,
    }
    if facts.refused:
        observation["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                       "code": "not-applicable"}], "text": facts.ood_reason}
    else:
        observation["valueQuantity"] = {"value": round(facts.probability, 6), "unit": "probability",
                                        "system": "http://unitsofmeasure.org", "code": "1"}
        interpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
        observation["interpretation"] = [{"coding": [{
            "system": interpretation, "code": "POS" if facts.label == "PNEUMONIA" else "NEG"}]}]
        if facts.borderline:  # equivocal: in the operating point's borderline band
            observation["interpretation"].append({"coding": [{"system": interpretation, "code": "E",
                                                              "display": "Equivocal"}],
                                                  "text": "borderline: review"})
        observation["referenceRange"] = [{"text": f"PNEUMONIA at or above {facts.threshold:.6f} "
                                                  f"({facts.population or 'single'} operating point: "
                                                  f"{facts.operating_point})"}]
    contained = [patient, device, {k: v for k, v in observation.items() if v is not None}]
    results = [{"reference": "#observation"}]
    subtype = facts.subtype_text()
    if subtype and not facts.refused:
        contained.append({
            "resourceType": "Observation", "id": "subtype", "status": status,
            "category": observation["category"], "subject": {"reference": "#patient"},
            "device": {"reference": "#device"}, "effectiveDateTime": facts.study_date,
            "code": {"text": "AI-estimated pneumonia pattern, bacterial or viral (secondary output)"},
            "valueCodeableConcept": {"coding": [SUBTYPES[facts.subtype]], "text": facts.subtype},
            "note": [{"text": subtype}],
        })
        results.append({"reference": "#subtype"})
    report = {
        "resourceType": "DiagnosticReport", "id": f"prediction-{facts.prediction_id}-v{facts.version}",
        "meta": {"versionId": str(facts.version)},
        "contained": contained,
        "identifier": [{"system": "urn:pneumoweb:prediction", "value": str(facts.prediction_id)}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                                  "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"},
                            {"system": SNOMED, "code": "399208008", "display": "Plain chest X-ray"}],
                 "text": "Chest X-ray, AI pneumonia decision support"},
        "subject": {"reference": "#patient"},
        "effectiveDateTime": facts.study_date,
        "issued": facts.generated_at,
        "result": results,
        "conclusion": facts.conclusion() + " " + DISCLAIMER,
    }
    if not facts.refused:
        final = (facts.review.get("label") if facts.review else "") or facts.label
        report["conclusionCode"] = [{"coding": [FINDINGS[final]]}]
    return DiagnosticReport.model_validate(report).model_dump(mode="json", exclude_none=True)
