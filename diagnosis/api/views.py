from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..media import heatmap_response, image_response
from ..models import Patient, Prediction, Study
from ..permissions import can_review, visible_patients, visible_predictions, visible_studies
from ..services import apply_review, cancel_prediction
from ..throttling import AtomicScopedRateThrottle
from .filters import PredictionFilter, StudyFilter
from .serializers import (
    MRN_TAKEN,
    PatientSerializer,
    PredictionSerializer,
    PredictRequestSerializer,
    ReviewSerializer,
    StudySerializer,
)

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
        responses={202: PredictAccepted, 400: OpenApiResponse(description="Field-level validation errors")},
    )
    def post(self, request):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + settings.PNEUMOWEB_MAX_UPLOAD_BYTES:
            raise ValidationError({"image": f"Request is too large ({length / 1e6:.1f} MB)."})
        serializer = PredictRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        prediction = serializer.save()
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
        save_patient(serializer, owner=self.request.user)

    def perform_update(self, serializer):
        if serializer.instance.owner_id != self.request.user.pk:
            raise PermissionDenied("Only the patient's own clinician can edit the record.")
        save_patient(serializer)


def save_patient(serializer, **fields):
    """Save; the loser of two concurrent saves with one MRN gets the same 400 as a sequential clash."""
    try:
        with transaction.atomic():
            serializer.save(**fields)
    except IntegrityError:
        raise ValidationError({"mrn": [MRN_TAKEN]}) from None


class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = r"[0-9]+"
    serializer_class = StudySerializer
    queryset = Study.objects.none()  # for the schema; requests use get_queryset()
    filterset_class = StudyFilter

    def get_queryset(self):
        return visible_studies(self.request.user)

    @extend_schema(responses={(200, "image/*"): OpenApiResponse(description="The uploaded image")})
    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        return image_response(self.get_object())


class PredictionViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = r"[0-9]+"
    serializer_class = PredictionSerializer
    queryset = Prediction.objects.none()  # for the schema; requests use get_queryset()
    filterset_class = PredictionFilter

    def get_queryset(self):
        return visible_predictions(self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("branch", str, enum=list(Prediction.HEATMAP_BRANCHES), default="combined")],
        responses={(200, "image/png"): OpenApiResponse(description="Heatmap (CNN Grad-CAM and ViT attention rollout), RGBA PNG to overlay on the X-ray")},
    )
    @action(detail=True, methods=["get"])
    def heatmap(self, request, pk=None):
        return heatmap_response(self.get_object(), request.query_params.get("branch", "combined"))

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
