from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.trail import record_access
from core.throttling import AtomicScopedRateThrottle

from ..media import heatmap_response, image_response, pdf_response, private
from ..models import Patient, Prediction, Study
from ..permissions import can_review, visible_patients, visible_predictions, visible_studies
from ..reports import NoReport, current_report
from ..services import MRN_TAKEN, MrnTaken, PatientMismatch, apply_review, cancel_prediction, save_patient
from .exceptions import Conflict
from .filters import PredictionFilter, StudyFilter
from .idempotency import PARAMETER as IDEMPOTENCY_KEY
from .idempotency import idempotent
from .serializers import (
    PatientSerializer,
    PredictBatchRequestSerializer,
    PredictionSerializer,
    PredictRequestSerializer,
    ReportVersionSerializer,
    ReviewSerializer,
    StudySerializer,
)

# Any answer that reads a stored file (or writes a report version drawn from the X-ray and its heatmap).
FILE_CHANGED = OpenApiResponse(description="A stored file failed its integrity check (it is not the file that was "
                                           "stored): nothing of it is sent; an administrator has been told")

PredictAccepted = inline_serializer(
    "PredictAccepted",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "url": serializers.URLField(),
        "page_url": serializers.URLField(),
        "patient": serializers.IntegerField(),
        "study": serializers.IntegerField(),
    },
)


class PredictView(APIView):
    """Upload a chest X-ray with the patient's age; the prediction runs asynchronously."""

    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [AtomicScopedRateThrottle]
    throttle_scope = "predict"

    @extend_schema(
        request=PredictRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: PredictAccepted, 400: OpenApiResponse(description="Field-level validation errors"),
                   422: OpenApiResponse(description="The Idempotency-Key was used for a different request"),
                   409: OpenApiResponse(description="patient_mrn names an existing patient with another name or "
                                                    "birth date: nothing was saved; or a request with the same "
                                                    "Idempotency-Key is still being handled")},
    )
    @idempotent
    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + settings.PNEUMOWEB_MAX_UPLOAD_BYTES:
            raise ValidationError({"image": f"Request is too large ({length / 1e6:.1f} MB)."})
        serializer = PredictRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        prediction = save_upload(serializer)
        url = request.build_absolute_uri(reverse("api:prediction-detail", args=[prediction.pk]))
        body = {
            "id": prediction.pk,
            "status": prediction.status,
            "url": url,
            "page_url": request.build_absolute_uri(prediction.get_absolute_url()),
            "patient": prediction.study.patient_id,
            "study": prediction.study_id,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


def save_upload(serializer):
    # The serializer refused a contradicting MRN already; a record created meanwhile by a concurrent
    # upload is caught at the save, with the same answer.
    try:
        return serializer.save()
    except PatientMismatch as exc:
        raise Conflict(str(exc)) from None


PredictBatchAccepted = inline_serializer("PredictBatchAccepted", {
    "accepted": inline_serializer("AcceptedStudy", many=True, fields={
        "file": serializers.CharField(), "id": serializers.IntegerField(), "status": serializers.CharField(),
        "url": serializers.URLField(), "study": serializers.IntegerField()}),
    "refused": inline_serializer("RefusedFile", many=True, fields={
        "file": serializers.CharField(), "errors": serializers.ListField(child=serializers.CharField())}),
    "patient": serializers.IntegerField(),
})


class PredictBatchView(APIView):
    """Upload several chest X-rays of one patient; each is its own study and prediction, with its own errors."""

    parser_classes = [MultiPartParser]
    throttle_classes = [AtomicScopedRateThrottle]
    throttle_scope = "predict"

    @extend_schema(request=PredictBatchRequestSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={202: PredictBatchAccepted, 400: OpenApiResponse(description="No file was accepted"),
                              422: OpenApiResponse(description="The Idempotency-Key was used for a different request"),
                              409: OpenApiResponse(description="patient_mrn names an existing patient with another "
                                                               "name or birth date: nothing was saved; or a request with "
                                                               "the same Idempotency-Key is still being handled")})
    @idempotent
    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + settings.PNEUMOWEB_MAX_BATCH_FILES * settings.PNEUMOWEB_MAX_UPLOAD_BYTES
        if length > limit:
            raise ValidationError({"images": [f"Request is too large ({length / 1e6:.1f} MB)."]})
        serializer = PredictBatchRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        predictions, refused = save_upload(serializer)
        body = {
            "patient": predictions[0].study.patient_id,
            "accepted": [{"file": p.study.original_filename, "id": p.pk, "status": p.status, "study": p.study_id,
                          "url": request.build_absolute_uri(reverse("api:prediction-detail", args=[p.pk]))}
                         for p in predictions],
            "refused": [{"file": name, "errors": messages} for name, messages in refused],
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class PatientViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    lookup_value_regex = r"[0-9]+"
    serializer_class = PatientSerializer
    queryset = Patient.objects.none()  # for the schema; requests use get_queryset()
    # JSON only: a form field cannot tell an empty date of birth from a null one.
    parser_classes = [JSONParser]
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["mrn", "name"]
    ordering_fields = ["name", "mrn", "created_at"]

    def get_queryset(self):
        return visible_patients(self.request.user).select_related("owner")

    def perform_create(self, serializer):
        save_or_400(lambda: serializer.save(owner=self.request.user))

    def perform_update(self, serializer):
        if serializer.instance.owner_id != self.request.user.pk:
            raise PermissionDenied("Only the patient's own clinician can edit the record.")
        save_or_400(serializer.save)


def save_or_400(save):
    # The loser of two concurrent saves with one MRN gets the same 400 as a sequential clash.
    try:
        save_patient(save)
    except MrnTaken:
        raise ValidationError({"mrn": [MRN_TAKEN]}) from None


class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = r"[0-9]+"
    serializer_class = StudySerializer
    queryset = Study.objects.none()  # for the schema; requests use get_queryset()
    filterset_class = StudyFilter

    def get_queryset(self):
        return visible_studies(self.request.user)

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(description="The uploaded image"),
                              409: FILE_CHANGED})
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        study = self.get_object()
        record_access(request, "download", study, what="X-ray image")
        return image_response(study)


VERSION = OpenApiParameter("version", int, description="A report version (default: the latest)")


def report_version(prediction, version):
    """The asked version of the prediction's report, or the current one (written if needed); 404 otherwise."""
    if version in (None, ""):
        try:
            return current_report(prediction)
        except NoReport as exc:
            raise NotFound(str(exc)) from None
    if not str(version).isdecimal():
        raise ValidationError({"version": ["A report version is a whole number."]})
    report = prediction.reports.filter(version=int(version)).first()
    if report is None:
        raise NotFound(f"The prediction has no report version {version}.")
    return report


class PredictionViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = r"[0-9]+"
    serializer_class = PredictionSerializer
    queryset = Prediction.objects.none()  # for the schema; requests use get_queryset()
    filterset_class = PredictionFilter

    def get_queryset(self):
        return visible_predictions(self.request.user)

    def retrieve(self, request, *args, **kwargs):
        prediction = self.get_object()
        record_access(request, "view", prediction)
        return Response(self.get_serializer(prediction).data)

    @extend_schema(
        parameters=[OpenApiParameter("branch", str, enum=list(Prediction.HEATMAP_BRANCHES), default="combined")],
        responses={(200, "image/png"): OpenApiResponse(description="Heatmap (combined = the CNN map: v4 its class-activation map; cnn; vit = ViT patch CAM, made by v3 only: 404 where the model made none), RGBA PNG to overlay on the X-ray"),
                   409: FILE_CHANGED},
    )
    @action(detail=True, methods=["get"])
    def heatmap(self, request, pk=None):
        prediction, branch = self.get_object(), request.query_params.get("branch", "combined")
        response = heatmap_response(prediction, branch)
        record_access(request, "download", prediction, what=f"{branch} heatmap")
        return response

    @extend_schema(parameters=[VERSION], responses={(200, "application/pdf"): OpenApiResponse(
        description="The PDF report (the latest version unless `version` is given)"), 409: FILE_CHANGED})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        report = report_version(self.get_object(), request.query_params.get("version"))
        record_access(request, "download", report, what="report PDF", version=report.version)
        return pdf_response(report)

    @extend_schema(parameters=[VERSION], responses={(200, "application/fhir+json"): OpenApiResponse(
        description="FHIR R4 DiagnosticReport (Observation, Patient and Device contained)"), 409: FILE_CHANGED})
    @action(detail=True, methods=["get"])
    def fhir(self, request, pk=None):
        report = report_version(self.get_object(), request.query_params.get("version"))
        record_access(request, "download", report, what="report FHIR", version=report.version)
        return private(JsonResponse(report.fhir, content_type="application/fhir+json"))

    @extend_schema(responses={200: ReportVersionSerializer(many=True), 409: FILE_CHANGED})
    @action(detail=True, methods=["get"])
    def reports(self, request, pk=None):
        """Every version of the report written so far (a review writes a new one; old ones stay)."""
        prediction = self.get_object()
        if prediction.status in Prediction.OUTCOMES:
            try:
                current_report(prediction)
            except NoReport as exc:
                raise NotFound(str(exc)) from None
        versions = prediction.reports.order_by("version")
        return Response(ReportVersionSerializer(versions, many=True, context={"request": request}).data)

    @extend_schema(request=None, responses={200: PredictionSerializer, 409: OpenApiResponse(description="Already finished")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        prediction = self.get_object()
        if prediction.study.patient.owner_id != request.user.pk:
            raise PermissionDenied("Only the patient's own clinician can cancel a prediction.")
        if not cancel_prediction(prediction):
            return Response(
                {"detail": f"The prediction is already {prediction.status}."}, status=status.HTTP_409_CONFLICT
            )
        return Response(self.get_serializer(prediction).data)

    @extend_schema(request=ReviewSerializer, responses={200: PredictionSerializer})
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        if not can_review(request.user):
            raise PermissionDenied("Only reviewers can record a verdict.")
        prediction = self.get_object()
        if prediction.status not in Prediction.OUTCOMES:
            raise ValidationError({"detail": "Only succeeded or rejected predictions can be reviewed."})
        serializer = ReviewSerializer(prediction, data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        apply_review(
            prediction, verdict=data["review_verdict"], label=data.get("review_label", ""),
            comment=data.get("review_comment", ""), reviewer=request.user,
        )
        prediction.save()
        return Response(self.get_serializer(prediction).data)
