from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer, inline_serializer
from rest_framework import serializers

from ..images import check_each, check_upload, study_fields
from ..models import AGE_MAX, AGE_MIN, Patient, Prediction, Report, Study, validate_birth_date
from ..permissions import writable_patients
from ..services import clean_mrn, identity_conflict, review_errors, submit_studies, submit_study
from .exceptions import Conflict


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers, booleans and lists instead of turning them into text."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
    }


class PatientSerializer(StrictModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:patient-detail")
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Patient
        fields = ["id", "url", "mrn", "name", "sex", "date_of_birth", "owner", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_mrn(self, value):
        try:
            return clean_mrn(value, owner=self.context["request"].user, patient=self.instance)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class StudySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:study-detail")
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id", "url", "patient", "image_url", "original_filename", "image_sha256",
            "image_width", "image_height", "age_years", "view", "notes", "source_format", "source_notes",
            "uploaded_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField)
    def get_image_url(self, study):
        return self.context["request"].build_absolute_uri(reverse("api:study-image", args=[study.pk]))


class ModelVersionSerializer(serializers.Serializer):
    name = serializers.CharField(source="model_name")
    weights_sha256 = serializers.CharField(source="model_sha256")


class ReviewSerializer(serializers.ModelSerializer):
    verdict = serializers.ChoiceField(source="review_verdict", choices=Prediction.Verdict.choices)
    corrected_label = serializers.ChoiceField(
        source="review_label", choices=Prediction.Label.choices, required=False, allow_blank=True
    )
    comment = serializers.CharField(source="review_comment", required=False, allow_blank=True)
    reviewed_by = serializers.CharField(source="reviewed_by.username", read_only=True, default=None)

    class Meta:
        model = Prediction
        fields = ["verdict", "corrected_label", "comment", "reviewed_by", "reviewed_at"]
        read_only_fields = ["reviewed_at"]

    API_NAMES = {"review_verdict": "verdict", "review_label": "corrected_label", "review_comment": "comment"}

    def validate(self, attrs):
        errors = review_errors(
            verdict=attrs.get("review_verdict"), label=attrs.get("review_label"), comment=attrs.get("review_comment")
        )
        if errors:
            raise serializers.ValidationError({self.API_NAMES[f]: m for f, m in errors.items()})
        return attrs


@extend_schema_serializer(deprecate_fields=["confidence"])
class PredictionSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:prediction-detail")
    page_url = serializers.SerializerMethodField()
    patient = serializers.IntegerField(source="study.patient_id", read_only=True)
    study = StudySerializer(read_only=True)
    label = serializers.SerializerMethodField()
    confidence = serializers.FloatField(
        read_only=True, help_text="Deprecated (removed in the next API version): P of the label shown, which reads "
                                  "as certainty where the threshold is low. Use probability, threshold and borderline.")
    borderline = serializers.BooleanField(
        read_only=True, help_text="P(pneumonia) lies in the operating point's borderline band: the label could flip "
                                  "with another validation sample; review it.")
    operating_point = serializers.CharField(
        read_only=True, help_text="Whose threshold gave the label: \"site operating point of <date> (#id)\" (refit on "
                                  "this site's reviewed studies) or \"the model card's operating point\"; empty "
                                  "without a label.")
    site_point = serializers.IntegerField(source="site_point_id", read_only=True, allow_null=True,
                                          help_text="The site operating point's id; null: the model card's point.")
    heatmap_is_evidence = serializers.BooleanField(
        source="shows_heatmap", read_only=True,
        help_text="Whether the heatmap stands for evidence of pneumonia (a PNEUMONIA or borderline result) and is "
                  "shown by default; a NORMAL result's map shows evidence for NORMAL and is not shown unless asked.")
    model = ModelVersionSerializer(source="*", read_only=True)
    review = serializers.SerializerMethodField()
    heatmap = serializers.SerializerMethodField()
    heatmaps = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField()
    fhir = serializers.SerializerMethodField()
    subtype = serializers.SerializerMethodField()
    warnings = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="Intended-use warnings (e.g. age outside the validated range, a lateral view): the result "
                  "is shown but marked.",
    )

    class Meta:
        model = Prediction
        fields = [
            "id", "url", "page_url", "status", "label", "probability", "confidence", "threshold", "borderline",
            "population", "operating_point", "site_point", "review_sample",
            "ood", "ood_reason", "warnings", "subtype", "heatmap", "heatmaps", "heatmap_is_evidence", "report", "fhir", "model", "queued_at",
            "started_at", "finished_at", "error", "patient", "study", "review",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Prediction.Label.choices, allow_null=True))
    def get_label(self, prediction):
        """PNEUMONIA or NORMAL once succeeded; null before, and for a rejected, failed or cancelled job."""
        return prediction.label or None

    @extend_schema_field(inline_serializer("Subtype", {
        "label": serializers.ChoiceField(choices=Prediction.Subtype.choices),
        "probability": serializers.FloatField(help_text="P(the subtype given), 0.5–1."),
        "validation": serializers.DictField(help_text="auc, ci95 and validated_ages of this output"),
        "note": serializers.CharField(),
    }, allow_null=True))
    def get_subtype(self, prediction):
        """Bacterial or viral: secondary, for PNEUMONIA results at the validated ages only (and not once a
        reviewer corrected the label to NORMAL); null otherwise."""
        if not prediction.shown_subtype or prediction.subtype_probability is None:
            return None
        return {"label": prediction.subtype, "probability": prediction.subtype_probability,
                "validation": prediction.subtype_validation,
                "note": "Secondary information; it never changes the PNEUMONIA/NORMAL label."}

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap(self, prediction):
        return self.get_heatmaps(prediction).get("combined")

    @extend_schema_field(serializers.DictField(child=serializers.URLField()))
    def get_heatmaps(self, prediction):
        """Authenticated URLs of the stored maps: combined, cnn, vit (empty until the job succeeds)."""
        url = self.context["request"].build_absolute_uri(reverse("api:prediction-heatmap", args=[prediction.pk]))
        return {branch: url if branch == "combined" else f"{url}?branch={branch}"
                for branch, field in Prediction.HEATMAP_BRANCHES.items() if getattr(prediction, field)}

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_report(self, prediction):
        """PDF report of the result (latest version); null until the job has an outcome."""
        return self._outcome_url(prediction, "api:prediction-report")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_fhir(self, prediction):
        """FHIR R4 DiagnosticReport of the result (latest version); null until the job has an outcome."""
        return self._outcome_url(prediction, "api:prediction-fhir")

    def _outcome_url(self, prediction, name):
        if prediction.status not in Prediction.OUTCOMES:
            return None
        return self.context["request"].build_absolute_uri(reverse(name, args=[prediction.pk]))

    @extend_schema_field(serializers.URLField)
    def get_page_url(self, prediction):
        return self.context["request"].build_absolute_uri(prediction.get_absolute_url())

    @extend_schema_field(ReviewSerializer(allow_null=True))
    def get_review(self, prediction):
        return ReviewSerializer(prediction).data if prediction.is_reviewed else None


@extend_schema_field(OpenApiTypes.INT)
class OwnPatientField(serializers.PrimaryKeyRelatedField):
    """Another clinician's patient id is answered exactly like an unknown id."""

    def get_queryset(self):
        return writable_patients(self.context["request"].user)


class PredictRequestSerializer(serializers.Serializer):
    """Everything is validated before anything is written."""

    image = serializers.FileField(help_text="Chest X-ray: JPEG, PNG or DICOM (CR/DX; stored as a de-identified PNG).")
    age = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=AGE_MIN, max_value=AGE_MAX, required=False,
        help_text="Age in years at acquisition (0–120, decimals allowed). Optional: without it the age comes "
                  "from the patient's birth date on record, else from a DICOM PatientAge, else the study is run "
                  "at the most sensitive operating point with a warning. An age more than a year away from "
                  "the birth date on record is refused.",
    )
    patient = OwnPatientField(required=False, help_text="Id of one of your patients.")
    patient_mrn = StrictCharField(max_length=64, required=False, help_text="Creates or reuses the patient with this MRN.")
    patient_name = StrictCharField(max_length=200, required=False)
    patient_sex = serializers.ChoiceField(choices=Patient.Sex.choices, required=False)
    patient_date_of_birth = serializers.DateField(required=False, validators=[validate_birth_date])
    view = serializers.ChoiceField(choices=Study.View.choices, default=Study.View.PA)
    notes = StrictCharField(required=False, allow_blank=True, default="")

    def validate_image(self, upload):
        try:
            return check_upload(upload)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate(self, attrs):
        attrs = self.resolve_patient(attrs)
        try:
            attrs["age"], attrs["view"], attrs["source_notes"] = study_fields(
                attrs["image"], age=attrs.get("age"), view=attrs["view"], date_of_birth=self.birth_date
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs

    def resolve_patient(self, attrs):
        """Check the patient fields; sets ``self.birth_date`` (the record's, else the one given for a new patient)."""
        if attrs.get("patient") and attrs.get("patient_mrn"):
            raise serializers.ValidationError({"patient": "Give either a patient id or patient fields, not both."})
        if not attrs.get("patient"):
            mrn = (attrs.get("patient_mrn") or "").strip()
            if not mrn:
                raise serializers.ValidationError({"patient": "Give a patient id, or patient_mrn and patient_name."})
            existing = Patient.objects.filter(owner=self.context["request"].user, mrn=mrn).first()
            if existing is None and not attrs.get("patient_name", "").strip():
                raise serializers.ValidationError({"patient_name": "Required to create a new patient."})
            conflict = existing and identity_conflict(existing, name=attrs.get("patient_name", ""),
                                                      date_of_birth=attrs.get("patient_date_of_birth"))
            if conflict:
                raise Conflict(conflict)
            attrs["patient_mrn"] = mrn
            self.birth_date = existing.date_of_birth if existing else attrs.get("patient_date_of_birth")
        else:
            self.birth_date = attrs["patient"].date_of_birth
        return attrs

    def new_patient(self):
        data = self.validated_data
        if data.get("patient") is not None:
            return None
        return {"mrn": data["patient_mrn"], "name": data.get("patient_name", "").strip(),
                "sex": data.get("patient_sex", Patient.Sex.UNKNOWN), "date_of_birth": data.get("patient_date_of_birth")}

    def save(self):
        data = self.validated_data
        _, prediction = submit_study(
            patient=data.get("patient"),
            new_patient=self.new_patient(),
            checked_image=data["image"],
            age_years=data["age"],
            uploaded_by=self.context["request"].user,
            view=data["view"],
            notes=data["notes"],
            source_notes=data["source_notes"],
        )
        return prediction


class ReportVersionSerializer(serializers.ModelSerializer):
    reviewed = serializers.SerializerMethodField()
    pdf = serializers.SerializerMethodField()
    fhir = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = ["version", "created_at", "reviewed", "pdf", "fhir"]
        read_only_fields = fields

    def get_reviewed(self, report) -> bool:
        return bool(report.review_state)

    @extend_schema_field(serializers.URLField)
    def get_pdf(self, report):
        url = reverse("api:prediction-report", args=[report.prediction_id])
        return self.context["request"].build_absolute_uri(f"{url}?version={report.version}")

    @extend_schema_field(serializers.URLField)
    def get_fhir(self, report):
        url = reverse("api:prediction-fhir", args=[report.prediction_id])
        return self.context["request"].build_absolute_uri(f"{url}?version={report.version}")


class PredictBatchRequestSerializer(PredictRequestSerializer):
    """Several X-rays of one patient: each file is checked on its own and becomes its own study."""

    image = None
    images = serializers.ListField(
        # Empty files pass here and are refused one by one, by name, with the others' checks (check_each).
        child=serializers.FileField(allow_empty_file=True), min_length=1,
        help_text="Chest X-rays (JPEG, PNG or DICOM), the field given once per file; at most "
                  "PNEUMOWEB_MAX_BATCH_FILES (20) per request.",
    )

    def validate_images(self, uploads):
        if len(uploads) > settings.PNEUMOWEB_MAX_BATCH_FILES:
            raise serializers.ValidationError(f"{len(uploads)} files: upload at most "
                                              f"{settings.PNEUMOWEB_MAX_BATCH_FILES} at once.")
        return uploads

    def validate(self, attrs):
        attrs = self.resolve_patient(attrs)
        attrs["accepted"], attrs["refused"] = check_each(attrs["images"], age=attrs.get("age"), view=attrs["view"],
                                                         date_of_birth=self.birth_date)
        if not attrs["accepted"]:
            raise serializers.ValidationError({"images": [f"{name}: {' '.join(messages)}"
                                                          for name, messages in attrs["refused"]]})
        return attrs

    def save(self):
        """(accepted predictions, refused files); the new patient, if any, is created with the first study."""
        data = self.validated_data
        predictions = submit_studies(data["accepted"], uploaded_by=self.context["request"].user, notes=data["notes"],
                                     patient=data.get("patient"), new_patient=self.new_patient())
        return predictions, data["refused"]
