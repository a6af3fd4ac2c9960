"""GET /api/monitoring/: the monitoring figures as JSON, or as CSV with ``export=csv``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.trail import record_access
from core.csv_export import csv_response
from diagnosis.api.serializers import ModelVersionSerializer
from diagnosis.models import Prediction
from diagnosis.permissions import can_monitor

from .filters import MonitoringFilter
from .summary import csv_rows, monitor


class CanMonitor(BasePermission):
    message = "Monitoring is for reviewers and administrators."

    def has_permission(self, request, view):
        return can_monitor(request.user)


MonitoringGroups = inline_serializer("MonitoringGroup", many=True, fields={
    "model": ModelVersionSerializer(),
    "population": serializers.CharField(help_text='"refused before a population": refusals of a model whose card '
                                                  "is not deployed here (no operating point to count them in)"),
    "refused_only": serializers.BooleanField(),
    "predictions": serializers.IntegerField(), "refusal_rate": serializers.DictField(),
    "reviewed_fraction": serializers.DictField(), "agreement": serializers.DictField(),
    "sensitivity": serializers.DictField(), "specificity": serializers.DictField(),
    "ppv": serializers.DictField(), "npv": serializers.DictField(), "drift": serializers.DictField(),
    "probability_histogram": serializers.DictField(), "confusion_vs_reviewers": serializers.DictField(),
    "failed": serializers.IntegerField(),
})


class MonitoringView(APIView):
    """Performance in use per model version and population, against the reviewers' labels (reviewers, admins)."""

    permission_classes = [CanMonitor]

    @extend_schema(
        parameters=[OpenApiParameter("since", OpenApiTypes.DATE), OpenApiParameter("until", OpenApiTypes.DATE),
                    OpenApiParameter("model", str), OpenApiParameter("population", str),
                    OpenApiParameter("export", str, enum=["csv"], description="csv: the same figures as a CSV file")],
        responses={200: inline_serializer("Monitoring", {"groups": MonitoringGroups,
                                                         "filters": serializers.DictField()}),
                   (200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR, description="With export=csv")},
    )
    def get(self, request):
        export = request.query_params.get("export")
        if export not in (None, "csv"):
            raise ValidationError({"export": ["The only export is csv."]})
        data = {k: v for k, v in request.query_params.items() if k != "export"}
        filterset = MonitoringFilter(data, queryset=Prediction.objects.all())
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        groups = monitor(filterset.qs)
        if export == "csv":
            record_access(request, "export", request.user, what="monitoring CSV", query=request.GET.urlencode())
            return csv_response(csv_rows(groups), "monitoring")
        return Response({"filters": filterset.form.cleaned_data and {k: str(v) for k, v in
                                                                     filterset.form.cleaned_data.items() if v},
                         "groups": groups})
