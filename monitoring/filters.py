"""The period, model and population a monitoring summary covers (page, chart and API alike)."""

import django_filters
from django import forms

from core.filters import StrictFilterSet
from diagnosis.models import Prediction

DATE = forms.DateInput(attrs={"type": "date"})  # the browser's date picker


class MonitoringFilter(StrictFilterSet):
    since = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__gte", label="From (date)", widget=DATE)
    until = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__lte", label="Until (date)", widget=DATE)
    model = django_filters.CharFilter(field_name="model_name", label="Model name")
    population = django_filters.CharFilter(label="Population")

    class Meta:
        model = Prediction
        fields = ["since", "until", "model", "population"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Selects of what is on record (the API takes any text: an unknown name simply matches nothing).
        for name, column in (("model", "model_name"), ("population", "population")):
            values = Prediction.objects.exclude(**{column: ""}).order_by(column).values_list(column, flat=True)
            self.form.fields[name].widget = forms.Select(choices=[("", "all"), *((v, v) for v in values.distinct())])
