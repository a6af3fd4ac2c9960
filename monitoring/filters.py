"""The period, model and population a monitoring summary covers (page, chart and API alike)."""

import django_filters

from core.filters import StrictFilterSet
from diagnosis.models import Prediction


class MonitoringFilter(StrictFilterSet):
    since = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__gte", label="From (date)")
    until = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__lte", label="Until (date)")
    model = django_filters.CharFilter(field_name="model_name", label="Model name")
    population = django_filters.CharFilter(label="Population")

    class Meta:
        model = Prediction
        fields = ["since", "until", "model", "population"]
