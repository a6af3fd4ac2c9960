import uuid
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from audit.pseudonyms import patient_pseudonym
from ml.constants import AGE_MAX_YEARS, AGE_MIN_YEARS

AGE_MIN = Decimal(str(int(AGE_MIN_YEARS)))
AGE_MAX = Decimal(str(int(AGE_MAX_YEARS)))


OLDEST_BIRTH_YEARS = 130  # a birth date further back than this is a typing error (the oldest person lived 122 years)


def birth_date_problem(value, today=None):
    """Why a birth date cannot be a patient's ("" when it can): in the future, or more than 130 years ago."""
    if value is None:
        return ""
    today = today or timezone.localdate()
    if value > today:
        return f"A birth date cannot be in the future ({value.isoformat()} is after {today.isoformat()})."
    if value < today.replace(year=today.year - OLDEST_BIRTH_YEARS):
        return f"A birth date more than {OLDEST_BIRTH_YEARS} years ago ({value.isoformat()}) is not possible: check it."
    return ""


def validate_birth_date(value):
    """The one birth-date rule of pages, API and admin (a DICOM header's is noted instead: pacs/ingest.py)."""
    problem = birth_date_problem(value)
    if problem:
        raise ValidationError(problem, code="impossible_birth_date")


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    mrn = models.CharField("MRN", max_length=64, help_text="Medical record number, unique per clinician.")
    name = models.CharField(max_length=200)
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    date_of_birth = models.DateField(null=True, blank=True, validators=[validate_birth_date])
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="patients")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "mrn"]
        constraints = [models.UniqueConstraint(fields=["owner", "mrn"], name="unique_mrn_per_owner")]
        permissions = [("view_all_records", "Can view every clinician's patients, studies and predictions")]

    def __str__(self):
        return f"{self.name} ({self.mrn})"

    def audit_name(self):
        """How the audit trail names the patient: a keyed pseudonym, never the name or MRN."""
        return f"Patient {patient_pseudonym(self.pk)}"

    def get_absolute_url(self):
        return reverse("patient_detail", args=[self.pk])


def heatmap_upload_to(instance, filename):
    return f"heatmaps/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.png"


def study_upload_to(instance, filename):
    # Random name: the original name is kept as data, never used as a path.
    suffix = Path(filename).suffix.lower()
    return f"studies/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{suffix}"


class Study(models.Model):
    class View(models.TextChoices):
        PA = "PA", "Frontal PA"
        AP = "AP", "Frontal AP"
        LATERAL = "LAT", "Lateral"
        UNKNOWN = "UNK", "Unknown"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    image = models.FileField(upload_to=study_upload_to, max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    image_sha256 = models.CharField(max_length=64, db_index=True)  # checked whenever the image is read
    source_format = models.CharField(
        max_length=5, default="JPEG", help_text="Format uploaded: JPEG, PNG or DICOM (stored as a de-identified PNG)."
    )
    source_notes = models.JSONField(default=list, blank=True, help_text="What ingest read or resolved, for people.")
    image_width = models.PositiveIntegerField()
    image_height = models.PositiveIntegerField()
    age_years = models.DecimalField(
        "age at acquisition (years)",
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Unknown (null): the most sensitive operating point is used, with a warning.",
        validators=[MinValueValidator(AGE_MIN), MaxValueValidator(AGE_MAX)],
    )
    view = models.CharField(max_length=3, choices=View.choices, default=View.PA)
    notes = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-uploaded_at"]
        verbose_name_plural = "studies"

    def __str__(self):
        return f"Study {self.pk} of {self.patient.mrn}"

    def audit_name(self):
        return f"Study {self.pk} of patient {patient_pseudonym(self.patient_id)}"


class PredictionQuerySet(models.QuerySet):
    """Filters for the job lifecycle, and the one way a prediction's status changes."""

    def unfinished(self):
        return self.filter(status__in=Prediction.UNFINISHED)

    def dispatch_due(self, *, sent_before):
        """Queued jobs never handed to the broker, or handed to it before ``sent_before`` (maybe lost)."""
        return self.filter(status=Prediction.Status.QUEUED).filter(
            models.Q(dispatched_at__isnull=True) | models.Q(dispatched_at__lt=sent_before))

    def lease_expired(self, *, heartbeat_before):
        """Running jobs whose worker has not renewed its lease since ``heartbeat_before``: the worker is gone."""
        return self.filter(status=Prediction.Status.RUNNING).filter(
            models.Q(heartbeat_at__isnull=True) | models.Q(heartbeat_at__lt=heartbeat_before))

    def update_status(self, status, **fields):
        """Move every row of this queryset that may go to ``status`` (``Prediction.TRANSITIONS``) there.

        One conditional UPDATE: concurrent workers, a reconciler and a cancelling clinician can
        race on the same row and exactly one wins. Returns how many rows changed.
        """
        allowed = [source for source, targets in Prediction.TRANSITIONS.items() if status in targets]
        if status in Prediction.FINISHED:
            fields.setdefault("finished_at", timezone.now())
        return self.filter(status__in=allowed).update(status=status, **fields)


class Prediction(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        # Finished, but the input is not a chest X-ray the model was validated on: no label is given.
        REJECTED = "rejected"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Label(models.TextChoices):
        PNEUMONIA = "PNEUMONIA"
        NORMAL = "NORMAL"

    class Subtype(models.TextChoices):
        BACTERIAL = "bacterial", "Bacterial"
        VIRAL = "viral", "Viral"

    class Verdict(models.TextChoices):
        AGREE = "agree"
        DISAGREE = "disagree"

    FINISHED = (Status.SUCCEEDED, Status.REJECTED, Status.FAILED, Status.CANCELLED)
    UNFINISHED = (Status.QUEUED, Status.RUNNING)
    # Every status change there is. running → queued: a worker lost its lease and the job goes back.
    TRANSITIONS = {
        Status.QUEUED: {Status.RUNNING, Status.FAILED, Status.CANCELLED},
        Status.RUNNING: {Status.SUCCEEDED, Status.REJECTED, Status.FAILED, Status.CANCELLED, Status.QUEUED},
        Status.SUCCEEDED: set(), Status.REJECTED: set(), Status.FAILED: set(), Status.CANCELLED: set(),
    }
    # Model outcomes: immutable once written, except for the review.
    OUTCOMES = (Status.SUCCEEDED, Status.REJECTED)
    REVIEW_FIELDS = ("review_verdict", "review_label", "review_comment", "reviewed_by", "reviewed_at")

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="predictions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    label = models.CharField(max_length=10, choices=Label.choices, blank=True)
    probability = models.FloatField(null=True, blank=True, help_text="Model P(pneumonia), 0–1.")
    threshold = models.FloatField(null=True, blank=True, help_text="The operating point's threshold on P(pneumonia).")
    borderline = models.BooleanField(
        default=False, help_text="P(pneumonia) lies in the operating point's borderline band (model card): review it.")
    population = models.CharField(
        "operating point", max_length=20, blank=True,
        help_text="The validated population whose operating point was used (pediatric, adult), picked by age.",
    )
    # The site's own operating point when one was in force for this population and these weights
    # (diagnosis/site_points.py); empty: the model card's point. Recorded with the result, never changed.
    site_point = models.ForeignKey("SiteOperatingPoint", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="predictions")
    model_name = models.CharField(max_length=100, blank=True)
    model_sha256 = models.CharField("model weights sha256", max_length=64, blank=True)
    # Drawn at upload with probability PNEUMOWEB_REVIEW_SAMPLE_SHARE: the review queue's random sample,
    # the only reviews free of the flagged-and-borderline-first order (site calibration counts them apart).
    review_sample = models.BooleanField("in the random review sample", default=False)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    ood = models.BooleanField(
        "out of distribution", null=True, blank=True,
        help_text="True when the input is not a chest X-ray the model was validated on; unset until the job runs.",
    )
    ood_reason = models.TextField("why it was rejected", blank=True)
    # Heatmaps (ml.explain) for the label given: both branches combined, and each branch.
    heatmap = models.FileField(upload_to=heatmap_upload_to, max_length=255, blank=True)
    heatmap_cnn = models.FileField("CNN heatmap", upload_to=heatmap_upload_to, max_length=255, blank=True)
    # Legacy: only pneumoweb-v3 drew a ViT map (its map failed the pointing test and v4 draws none). Kept so
    # v3's predictions keep their maps; a model that draws no ViT map leaves both columns empty.
    heatmap_vit = models.FileField("ViT heatmap (legacy, v3 only)", upload_to=heatmap_upload_to, max_length=255,
                                   blank=True)
    # Each map's sha256, written with it and checked whenever it is read (diagnosis/integrity.py).
    heatmap_sha256 = models.CharField(max_length=64, blank=True)
    heatmap_cnn_sha256 = models.CharField("CNN heatmap sha256", max_length=64, blank=True)
    heatmap_vit_sha256 = models.CharField("ViT heatmap sha256 (legacy, v3 only)", max_length=64, blank=True)
    warnings = models.JSONField(
        default=list, blank=True, help_text="Intended-use warnings: the study is outside the model's validated population."
    )
    # Secondary output: given only for a PNEUMONIA result at the ages it was validated on (children
    # 1–5, Kermany); it never changes the label. Its own validation figure is kept with it.
    subtype = models.CharField("bacterial or viral", max_length=10, choices=Subtype.choices, blank=True)
    subtype_probability = models.FloatField(null=True, blank=True, help_text="P(the subtype given), 0.5–1.")
    subtype_validation = models.JSONField(
        default=dict, blank=True, help_text="The subtype output's validation: AUC, its 95 % interval, films, ages."
    )
    attempts = models.PositiveIntegerField(default=0)
    # Delivery: when the job was last handed to the broker (null: not yet, e.g. the broker was down),
    # and the running worker's lease (the Celery task id) with its last heartbeat.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    review_verdict = models.CharField(max_length=10, choices=Verdict.choices, blank=True)
    review_label = models.CharField("corrected label", max_length=10, choices=Label.choices, blank=True)
    review_comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at"]
        permissions = [("review_prediction", "Can record a reviewer verdict on a prediction")]

    def __str__(self):
        return f"Prediction {self.pk} ({self.status})"

    def get_absolute_url(self):
        return reverse("prediction_detail", args=[self.pk])

    @property
    def is_finished(self):
        return self.status in self.FINISHED

    @property
    def confidence(self):
        """Probability of the label shown (P for PNEUMONIA, 1 − P for NORMAL)."""
        if self.probability is None or not self.label:
            return None
        return self.probability if self.label == self.Label.PNEUMONIA else 1.0 - self.probability

    HEATMAP_BRANCHES = {"combined": "heatmap", "cnn": "heatmap_cnn", "vit": "heatmap_vit"}

    @property
    def shown_subtype(self):
        """The bacterial / viral output as shown: none once a reviewer corrected the label to NORMAL."""
        return "" if self.review_label == self.Label.NORMAL else self.subtype

    @property
    def is_reviewed(self):
        return bool(self.review_verdict)

    @property
    def shows_heatmap(self):
        """Whether the heatmap is shown as evidence: for a PNEUMONIA or a borderline result only.

        A NORMAL result's map shows where the model looked, and its hot spots read as "pneumonia found"
        to anyone who sees the picture alone (a PACS viewer, a glance at the page): it is not shown.
        """
        return bool(self.heatmap) and (self.label == self.Label.PNEUMONIA or self.borderline)

    @property
    def operating_point(self):
        """Whose operating point gave the label: this site's refit one (with its date) or the model card's."""
        if not self.label:
            return ""
        return self.site_point.described if self.site_point_id else "the model card's operating point"

    @property
    def model_version(self):
        return f"{self.model_name}@{self.model_sha256[:12]}" if self.model_name else ""

    def save(self, *args, **kwargs):
        if self.pk:
            self._refuse_edit_of_succeeded_result()
        super().save(*args, **kwargs)

    def _refuse_edit_of_succeeded_result(self):
        stored = type(self).objects.filter(pk=self.pk).values().first()
        if not stored or stored["status"] not in self.OUTCOMES:
            return
        review = {f if f != "reviewed_by" else "reviewed_by_id" for f in self.REVIEW_FIELDS}
        for field in self._meta.concrete_fields:
            if field.attname in review:
                continue
            if getattr(self, field.attname) != stored[field.attname]:
                raise ValueError(f"A {stored['status']} prediction is immutable except for its review ({field.name}).")


def confirmed_label(label, verdict, corrected):
    """The label a review confirms: the model's when the reviewer agrees, the corrected one when not ("" unreviewed).

    The one reading of a review as ground truth: monitoring's figures and site calibration's evidence.
    """
    if not verdict:
        return ""
    return label if verdict == Prediction.Verdict.AGREE else corrected


class SiteOperatingPoint(models.Model):
    """A population's operating point refitted on this site's reviewed studies (``diagnosis/site_points.py``).

    One row per version: proposed (waiting for a second administrator under the two-person rule),
    then active until a later point supersedes it or an administrator reverts to the card's point.
    At most one is active per population and weights; its figures are those the proposal showed,
    computed only from reviews made before ``evidence_until``.
    """

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Waiting for a second administrator"
        ACTIVE = "active", "In use"
        SUPERSEDED = "superseded", "Replaced by a later site point"
        REVERTED = "reverted", "Reverted to the model card's point"
        WITHDRAWN = "withdrawn", "Withdrawn before approval"

    population = models.CharField(max_length=20)
    model_name = models.CharField(max_length=100)
    model_sha256 = models.CharField("model weights sha256", max_length=64)
    threshold = models.FloatField(help_text="On the calibrated P(pneumonia), as the card's threshold.")
    band_low = models.FloatField(help_text="The refit borderline band's lower end.")
    band_high = models.FloatField(help_text="The refit borderline band's upper end.")
    card_threshold = models.FloatField(help_text="The model card's threshold for this population.")
    min_recall = models.FloatField(help_text="The population's recall floor the point was refit to (the card's).")
    evidence_until = models.DateTimeField(help_text="Only reviews made before this instant were counted.")
    figures = models.JSONField(help_text="The proposal as shown: counts, thresholds, recall and specificity with "
                                         "patient-bootstrap intervals, the share from the random review sample.")
    status = models.CharField(max_length=10, choices=Status.choices)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    active_from = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-proposed_at"]
        constraints = [
            models.UniqueConstraint(fields=["population", "model_sha256"], condition=models.Q(status="active"),
                                    name="one_active_site_point_per_population"),
            models.UniqueConstraint(fields=["population", "model_sha256"], condition=models.Q(status="proposed"),
                                    name="one_proposed_site_point_per_population"),
        ]

    def __str__(self):
        return f"{self.population} site operating point of {self.proposed_at:%Y-%m-%d} ({self.status})"

    @property
    def described(self):
        """What a result says of the point it used."""
        day = (self.active_from or self.proposed_at).date().isoformat()
        return f"site operating point of {day} (#{self.pk})"


def report_upload_to(instance, filename):
    return f"reports/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.pdf"


class Report(models.Model):
    """One version of a finished prediction's report: a PDF and a FHIR R4 DiagnosticReport.

    Version 1 is written the first time the report is asked for; a review recorded later makes the
    next request write a new version, and every earlier one stays as it was (``diagnosis/reports.py``).
    """

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reports")
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    review_state = models.JSONField(default=dict, blank=True, help_text="The review the version was written with.")
    pdf = models.FileField(upload_to=report_upload_to, max_length=255)
    pdf_sha256 = models.CharField(
        "PDF sha256", max_length=64, blank=True, help_text="Written with the PDF, checked whenever it is read.")
    fhir = models.JSONField(help_text="FHIR R4 DiagnosticReport (with its Observation, Patient and Device contained).")

    class Meta:
        ordering = ["prediction", "-version"]
        constraints = [models.UniqueConstraint(fields=["prediction", "version"], name="one_report_per_version")]

    def __str__(self):
        return f"Report v{self.version} of prediction {self.prediction_id}"


class IdempotentRequest(models.Model):
    """An accepted POST made with an ``Idempotency-Key``: what it was, and the answer to give it again.

    A row is written when such a request starts (``status_code`` null: still being handled) and
    completed with its answer; one that fails is deleted so the client can try again with the same
    key. Rows older than ``PNEUMOWEB_IDEMPOTENCY_TTL_HOURS`` are forgotten (``diagnosis/api/idempotency.py``).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    path = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request's fields and files.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    location = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_request_per_idempotency_key")]

    def __str__(self):
        return f"Idempotency-Key {self.key} of user {self.user_id}"

    @staticmethod
    def expired_before():
        return timezone.now() - timezone.timedelta(hours=settings.PNEUMOWEB_IDEMPOTENCY_TTL_HOURS)

    @classmethod
    def forget_expired(cls):
        """Delete the keys past their time; returns how many."""
        return cls.objects.filter(created_at__lt=cls.expired_before()).delete()[0]


class Erasure(models.Model):
    """A request to erase one patient's data, and what it erased (``diagnosis/erasure.py``).

    Holds nothing personal: the patient is named by their audit pseudonym and primary key, and the
    erased rows by their keys only. It outlives the patient (no foreign key to it) and is mirrored
    in the erasure log outside the database, which a restore re-applies.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested, waiting for a second administrator"
        DONE = "done", "Erased"

    patient_pk = models.BigIntegerField("patient id", db_index=True)
    patient_pseudonym = models.CharField(max_length=32)
    patient_created_at = models.DateTimeField(help_text="With the id, tells this patient from any later one.")
    reason = models.TextField(help_text="Why the law requires the erasure (no personal data here).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+", help_text="Empty: re-applied by a restore with no one to name.")
    requested_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    done_at = models.DateTimeField(null=True, blank=True)
    erased = models.JSONField(default=dict, blank=True, help_text="Keys of the rows erased and how many files.")

    class Meta:
        ordering = ["-requested_at"]
        constraints = [models.UniqueConstraint(fields=["patient_pk"], condition=models.Q(status="requested"),
                                               name="one_open_erasure_per_patient")]

    def __str__(self):
        return f"Erasure {self.pk} of patient {self.patient_pseudonym} ({self.status})"
