"""What came in over DICOM and what goes back: imaging studies, their instances, destinations, the export log.

Mapping onto the records (docs/ARCHITECTURE.md, "The DICOM path"):

- A PACS patient is a ``diagnosis.Patient`` owned by the PACS service account
  (``PNEUMOWEB_PACS_ACCOUNT``), found by (IssuerOfPatientID, PatientID): the pair is kept here
  (``PacsPatient``), the record's MRN is the PatientID (with the issuer in brackets when there is one).
  Clinicians in the group ``PNEUMOWEB_PACS_READERS_GROUP`` see those patients; reviewers see all.
- An ``ImagingStudy`` (one StudyInstanceUID) sits above today's one-image ``diagnosis.Study``:
  each frontal chest instance becomes one ``diagnosis.Study`` with its own prediction when the
  imaging study goes quiet (``grouping.py``). Each SOPInstanceUID is received once: a repeat is
  acknowledged and changes nothing.
- The stored pixels are the same de-identified PNG an upload keeps; the source's DICOM header
  (without pixels) is kept on the instance, because answering the PACS needs its identifiers.
- ``Export`` is the outbox for results going back (one row per result object, destination and
  review revision), like the prediction rows are for jobs: nothing is lost across a restart.
"""

import ipaddress
import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from diagnosis.models import Patient, Prediction, Study


def pixels_upload_to(instance, filename):
    return f"pacs/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.png"


class PacsPatient(models.Model):
    issuer = models.CharField("IssuerOfPatientID", max_length=64, blank=True)
    dicom_patient_id = models.CharField("PatientID", max_length=64)
    patient = models.OneToOneField(Patient, on_delete=models.PROTECT, related_name="pacs_identity")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "dicom_patient_id"], name="pacs_patient_once")]

    def __str__(self):
        return f"{self.dicom_patient_id} ({self.issuer})" if self.issuer else self.dicom_patient_id


class ImagingStudy(models.Model):
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="imaging_studies")
    accession_number = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    first_received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now, db_index=True)
    assessed_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="When the study went quiet and its frontal chest images were queued for the model.")

    class Meta:
        verbose_name_plural = "imaging studies"
        ordering = ["-last_received_at"]

    def __str__(self):
        return self.study_instance_uid


class Instance(models.Model):
    class Outcome(models.TextChoices):
        WAITING = "waiting", "Stored, waiting for the study to go quiet"
        SUBMITTED = "submitted", "Submitted to the model"
        SKIPPED = "skipped", "Skipped"

    imaging_study = models.ForeignKey(ImagingStudy, on_delete=models.PROTECT, related_name="instances")
    sop_instance_uid = models.CharField("SOPInstanceUID", max_length=64, unique=True)
    series_instance_uid = models.CharField("SeriesInstanceUID", max_length=64, blank=True)
    sop_class_uid = models.CharField("SOPClassUID", max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    view_position = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    received_from = models.CharField(max_length=200, help_text="Who sent it: calling AE title and address, or user.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, db_index=True)
    skip_reason = models.CharField(max_length=300, blank=True)
    header = models.JSONField(default=dict, blank=True, help_text="The DICOM header without pixels (DICOM JSON).")
    pixels = models.FileField(upload_to=pixels_upload_to, max_length=255, blank=True,
                              help_text="De-identified PNG held until the study is submitted.")
    pixels_sha256 = models.CharField(
        "pixels sha256", max_length=64, blank=True, help_text="Written with the PNG, checked when it is submitted.")
    age_years = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    notes = models.JSONField(default=list, blank=True)
    study = models.OneToOneField(Study, on_delete=models.PROTECT, null=True, blank=True, related_name="pacs_instance")
    answered_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="When the result (or its latest review) was queued for the destinations.")

    class Meta:
        ordering = ["received_at"]

    def __str__(self):
        return self.sop_instance_uid

    def audit_name(self):
        return f"DICOM instance {self.pk} of study {self.study_id or '-'}"


def validate_base_url(value):
    """An http(s) URL with a host: internal names without a dot (``http://pacs:8042/dicom-web``) and IP
    addresses are what hospitals use, and Django's URLValidator refuses the first."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise ValidationError("Give the DICOMweb base URL: http:// or https://, a host name or IP address, an "
                              "optional port and path, e.g. http://pacs:8042/dicom-web.")


def validate_ae_title(value):
    """DICOM AE title (PS3.5 AE): 1–16 characters, no backslash or control character, not only spaces."""
    if not value.strip() or len(value) > 16 or "\\" in value or any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise ValidationError("An AE title is 1 to 16 printable ASCII characters, without a backslash.")


def _is_host(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return not any(c.isspace() or c in "/:@?#" for c in value)


class Destination(models.Model):
    class Kind(models.TextChoices):
        DICOMWEB = "dicomweb", "DICOMweb STOW-RS"
        DIMSE = "dimse", "DICOM C-STORE"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.CharField("STOW-RS base URL", max_length=500, blank=True, validators=[validate_base_url],
                           help_text="DICOMweb only, e.g. http://pacs:8042/dicom-web (results go to {url}/studies)")
    ae_title = models.CharField("called AE title", max_length=16, blank=True, validators=[validate_ae_title],
                                help_text="C-STORE only: the PACS's AE title")
    host = models.CharField(max_length=200, blank=True, help_text="C-STORE only: host name or IP address")
    port = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1),
                                                                          MaxValueValidator(65535)],
                                       help_text="C-STORE only: the PACS's DICOM port (often 104 or 11112)")
    enabled = models.BooleanField(default=True)

    # What each kind needs; a field of the other kind is refused rather than silently ignored.
    NEEDS = {Kind.DICOMWEB: ("url",), Kind.DIMSE: ("ae_title", "host", "port")}

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        for field in self.NEEDS.get(self.kind, ()):
            if getattr(self, field) in (None, ""):
                errors[field] = f"A {self.get_kind_display()} destination needs this."
        for kind, fields in self.NEEDS.items():
            if kind != self.kind:
                for field in fields:
                    if getattr(self, field) not in (None, ""):
                        errors[field] = f"Only a {Destination.Kind(kind).label} destination uses this: leave it empty."
        if self.host and not _is_host(self.host):
            errors.setdefault("host", "Give a host name or IP address only (the port has its own field).")
        if errors:
            raise ValidationError(errors)


class ExportQuerySet(models.QuerySet):
    def due(self, now=None):
        now = now or timezone.now()
        return self.filter(status=Export.Status.PENDING, next_attempt_at__lte=now)


class Export(models.Model):
    """One result object for one destination: the outbox row and its delivery log."""

    class Kind(models.TextChoices):
        SR = "sr", "Structured report (TID 1500)"
        SC = "sc", "Secondary capture (heatmap)"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    # Empty for the SR that tells the PACS a frontal chest film was not assessed (its image could not be
    # read): there is no prediction to report, only the reason (exports.queue_exports).
    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="exports")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="exports")
    kind = models.CharField(max_length=2, choices=Kind.choices)
    revision = models.CharField(
        max_length=40, blank=True,
        help_text="Empty for the first result; the review's time for an amended SR.")
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series_instance_uid = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = ExportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["prediction", "destination", "kind", "revision"],
                                               name="export_once_per_revision"),
                       models.UniqueConstraint(fields=["instance", "destination", "kind"],
                                               condition=models.Q(prediction__isnull=True),
                                               name="not_assessed_export_once")]

    def __str__(self):
        about = f"prediction {self.prediction_id}" if self.prediction_id else f"instance {self.instance_id} (not assessed)"
        return f"{self.get_kind_display()} of {about} → {self.destination}"
