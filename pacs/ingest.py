"""Receiving one DICOM instance, from the C-STORE listener or STOW-RS alike.

``receive`` returns only once the instance is durably stored (its row committed, its de-identified
pixels on disk), so the listener answers success only then: a crash before it makes the sender
try again. It is quick (one decode, one small transaction) so that senders never time out and
retry-storm. An instance that is not a frontal chest radiograph — or is our own output coming
back — is acknowledged and recorded as skipped with its reason; only what cannot be recorded at
all (no SOP Instance UID or Study Instance UID) is refused. The OOD gate still has the last word
on what is submitted.
"""

import io
import logging
from dataclasses import dataclass

import pydicom
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis.images import DICOM_VIEWS, check_upload, study_fields
from diagnosis.integrity import sha256_hex
from diagnosis.models import Patient, Study, birth_date_problem
from ml.dicom import parse_date

from .dicom_out import is_our_output
from .models import ImagingStudy, Instance, PacsPatient

log = logging.getLogger(__name__)

RADIOGRAPHY = {"CR", "DX"}
CHEST = {"", "CHEST", "THORAX"}
FRONTAL = {"", "PA", "AP"}
FOR_PROCESSING_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral - For Processing
}


class Unacceptable(ValueError):
    """The instance cannot be recorded at all (no identifying UIDs): refused, not skipped."""


@dataclass(frozen=True)
class Received:
    instance: Instance
    repeat: bool  # the SOP Instance UID had been received before: nothing changed


def text(dataset, keyword):
    value = dataset.get(keyword, "")
    return str(value).strip() if value is not None else ""


UNREADABLE = "the image could not be read"  # a frontal chest film whose pixels could not be decoded: said to the sender

def skip_reason(dataset):
    """Why this instance is not a frontal chest radiograph for the model ("" when it is one)."""
    if is_our_output(dataset):
        return "our own result coming back (loop guard)"
    modality = text(dataset, "Modality").upper()
    if modality not in RADIOGRAPHY:
        return f"modality {modality or 'not recorded'} is not a radiograph (CR or DX)"
    body_part = text(dataset, "BodyPartExamined").upper()
    if body_part not in CHEST:
        return f"body part {body_part} is not the chest"
    view = text(dataset, "ViewPosition").upper()
    if view not in FRONTAL:
        return f"view {view} is not frontal (PA or AP): laterals are not assessed"
    if text(dataset, "SOPClassUID") in FOR_PROCESSING_SOP_CLASSES or \
            text(dataset, "PresentationIntentType").upper() == "FOR PROCESSING":
        return "a FOR PROCESSING image (raw detector data), not one for presentation"
    if "PixelData" not in dataset:
        return "the instance has no pixel data"
    if not text(dataset, "PatientID"):
        return "no PatientID: the result could not be matched to a patient"
    return ""


def header_json(dataset):
    """The dataset without its pixels (or any bulk data), as DICOM JSON for the database."""
    header = pydicom.Dataset()
    for element in dataset:
        if element.tag.group == 0x7FE0 or element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        header.add(element)
    try:
        return header.to_json_dict(bulk_data_threshold=10_000, bulk_data_element_handler=lambda element: "")
    except Exception:  # noqa: BLE001 - a malformed element must not lose the instance; keep what is readable
        log.warning("A DICOM header could not be kept whole", exc_info=True)
        return {}


def as_file(dataset):
    """The instance as a DICOM file, for the same decoding and checks as an upload."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return SimpleUploadedFile("instance.dcm", buffer.getvalue(), content_type="application/dicom")


def pacs_account():
    """The service account that owns patients received over DICOM (created on first use, no password)."""
    user, created = get_user_model().objects.get_or_create(username=settings.PNEUMOWEB_PACS_ACCOUNT)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def person_name(dataset):
    name = dataset.get("PatientName")
    if not name:
        return "(no name in the DICOM)"
    parts = [name.given_name, name.middle_name, name.family_name]
    return " ".join(part for part in parts if part).strip() or str(name)


def trusted_birth_date(dataset):
    """(PatientBirthDate as a date, or None when missing or impossible; a note saying why it was not used)."""
    value = parse_date(text(dataset, "PatientBirthDate"))
    problem = birth_date_problem(value)
    if problem:
        return None, f"PatientBirthDate not used: {problem}"
    return value, ""


def patient_for(dataset):
    """The record of (IssuerOfPatientID, PatientID), created from the header on first sight."""
    issuer, patient_id = text(dataset, "IssuerOfPatientID")[:64], text(dataset, "PatientID")[:64]
    found = PacsPatient.objects.filter(issuer=issuer, dicom_patient_id=patient_id).select_related("patient").first()
    if found:
        return found.patient
    mrn = (f"{patient_id} ({issuer})" if issuer else patient_id)[:64]
    sex = text(dataset, "PatientSex").upper()
    try:
        with transaction.atomic():
            patient, _ = Patient.objects.get_or_create(
                owner=pacs_account(), mrn=mrn,
                defaults={"name": person_name(dataset)[:200],
                          "sex": sex if sex in Patient.Sex.values else Patient.Sex.UNKNOWN,
                          "date_of_birth": trusted_birth_date(dataset)[0]})
            PacsPatient.objects.create(issuer=issuer, dicom_patient_id=patient_id, patient=patient)
    except IntegrityError:  # another association created it first
        patient = PacsPatient.objects.select_related("patient").get(issuer=issuer, dicom_patient_id=patient_id).patient
    return patient


def receive(dataset, *, received_from):
    """Record one instance (see the module docstring); returns :class:`Received`."""
    sop_uid, study_uid = text(dataset, "SOPInstanceUID"), text(dataset, "StudyInstanceUID")
    if not sop_uid or not study_uid:
        raise Unacceptable("the instance has no SOPInstanceUID or StudyInstanceUID")
    existing = Instance.objects.filter(sop_instance_uid=sop_uid).first()
    if existing:
        return Received(existing, repeat=True)

    reason = skip_reason(dataset)
    checked, age, view, notes = None, None, "", []
    if not reason:
        try:
            checked = check_upload(as_file(dataset))
        except ValidationError as exc:
            reason = f"{UNREADABLE}: " + " ".join(exc.messages)
    if not reason:
        date_of_birth, birth_note = trusted_birth_date(dataset)
        view = DICOM_VIEWS.get(text(dataset, "ViewPosition").upper(), Study.View.UNKNOWN)
        age, view, notes = study_fields(checked, age=None, view=view, date_of_birth=date_of_birth)
        notes = [birth_note, *notes] if birth_note else notes
    if reason:
        log.info("Skipped DICOM instance %s from %s: %s", sop_uid, received_from, reason)

    instance = Instance(
        sop_instance_uid=sop_uid[:64],
        series_instance_uid=text(dataset, "SeriesInstanceUID")[:64],
        sop_class_uid=text(dataset, "SOPClassUID")[:64],
        modality=text(dataset, "Modality")[:16],
        view_position=text(dataset, "ViewPosition")[:16],
        body_part=text(dataset, "BodyPartExamined")[:64],
        received_from=received_from[:200],
        outcome=Instance.Outcome.SKIPPED if reason else Instance.Outcome.WAITING,
        skip_reason=reason[:300],
        header=header_json(dataset),
        age_years=age,
        notes=notes,
    )
    if checked is not None:
        checked.file.seek(0)
        png = checked.file.read()
        instance.pixels_sha256 = sha256_hex(png)  # checked when the study is submitted (grouping.py)
        instance.pixels.save("instance.png", ContentFile(png), save=False)
    try:
        with transaction.atomic():
            now = timezone.now()
            patient = patient_for(dataset)
            imaging_study, created = ImagingStudy.objects.get_or_create(
                study_instance_uid=study_uid[:64],
                defaults={"patient": patient, "accession_number": text(dataset, "AccessionNumber")[:64],
                          "study_date": parse_date(text(dataset, "StudyDate"))})
            changes = {"last_received_at": now}
            if not reason:
                changes["assessed_at"] = None  # a new image (re)opens the study for assessment
            ImagingStudy.objects.filter(pk=imaging_study.pk).update(**changes)
            instance.imaging_study = imaging_study
            instance.save()
    except IntegrityError:
        # The same instance arrived on two associations at once: the other one recorded it.
        instance.pixels.delete(save=False)
        existing = Instance.objects.filter(sop_instance_uid=sop_uid).first()
        if existing is None:
            raise
        return Received(existing, repeat=True)
    except BaseException:
        instance.pixels.delete(save=False)
        raise
    return Received(instance, repeat=False)
