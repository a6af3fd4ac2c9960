"""Query filters of the API. Every filter is strict: a value it does not know is a 400, never ignored."""

import django_filters
from drf_spectacular.utils import extend_schema_field

from core.filters import BOOLEAN_CHOICES, StrictFilterSet, UtcDateTimeFilter

from ..models import Prediction, Study


@extend_schema_field({"type": "string", "enum": ["true", "false"]})
class StrictBooleanChoiceFilter(django_filters.ChoiceFilter):
    """"true" or "false", nothing else; declared as that string in the schema, whatever the model field's type."""


class PredictionFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=Prediction.Status.choices)
    label = django_filters.ChoiceFilter(choices=Prediction.Label.choices)
    # A number, not a lookup of the patient: another clinician's id and an id that does not exist
    # give the same empty answer (no existence oracle).
    patient = django_filters.NumberFilter(field_name="study__patient_id")
    mrn = django_filters.CharFilter(field_name="study__patient__mrn")
    population = django_filters.CharFilter()
    queued_after = UtcDateTimeFilter(field_name="queued_at", lookup_expr="gte")
    queued_before = UtcDateTimeFilter(field_name="queued_at", lookup_expr="lt")
    date = django_filters.DateFilter(field_name="queued_at", lookup_expr="date")
    reviewed = django_filters.ChoiceFilter(choices=BOOLEAN_CHOICES, method="filter_reviewed")
    # The random review sample (drawn at upload): ?review_sample=true&reviewed=false is that queue. Strict
    # like ``reviewed`` (anything but true/false is a 400); the schema says string, not the model field's
    # boolean (schemathesis caught an enum of strings declared as a boolean).
    review_sample = StrictBooleanChoiceFilter(choices=BOOLEAN_CHOICES, method="filter_review_sample")

    class Meta:
        model = Prediction
        fields = ["status", "label", "patient", "mrn", "population", "date", "queued_after", "queued_before",
                  "reviewed", "review_sample"]

    def filter_review_sample(self, queryset, name, value):
        return queryset.filter(review_sample=value == "true")

    def filter_reviewed(self, queryset, name, value):
        return queryset.exclude(review_verdict="") if value == "true" else queryset.filter(review_verdict="")


class StudyFilter(StrictFilterSet):
    patient = django_filters.NumberFilter(field_name="patient_id")
    view = django_filters.ChoiceFilter(choices=Study.View.choices)

    class Meta:
        model = Study
        fields = ["patient", "view"]
