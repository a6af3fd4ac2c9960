"""Query filters of the API. Every filter is strict: a value it does not know is a 400, never ignored."""

import datetime

import django_filters
from django_filters.fields import IsoDateTimeField

from ..models import Prediction, Study

BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


class UtcDateTimeField(IsoDateTimeField):
    """An RFC 3339 date-time with any UTC offset, turned into UTC before it reaches the database.

    PostgreSQL refuses an offset past ±15:59 with a server error; in UTC every offset is fine. A
    moment that has no UTC equivalent (year 1 at +14:00) is clamped to the first or last one.
    """

    def clean(self, value):
        moment = super().clean(value)
        if moment is None or moment.tzinfo is None:
            return moment
        try:
            return moment.astimezone(datetime.timezone.utc)
        except OverflowError:
            edge = datetime.datetime.min if moment.year == 1 else datetime.datetime.max
            return edge.replace(tzinfo=datetime.timezone.utc)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class StrictFilterSet(django_filters.FilterSet):
    """A parameter given with an empty value is an error for every filter that is not free text."""

    def is_valid(self):
        valid = super().is_valid()
        for name, field in self.form.fields.items():
            if self.data.get(name) == "" and not isinstance(self.filters[name], django_filters.CharFilter):
                self.form.add_error(name, "Give a value, or leave this parameter out.")
                valid = False
        return valid


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

    class Meta:
        model = Prediction
        fields = ["status", "label", "patient", "mrn", "population", "date", "queued_after", "queued_before",
                  "reviewed"]

    def filter_reviewed(self, queryset, name, value):
        return queryset.exclude(review_verdict="") if value == "true" else queryset.filter(review_verdict="")


class StudyFilter(StrictFilterSet):
    patient = django_filters.NumberFilter(field_name="patient_id")
    view = django_filters.ChoiceFilter(choices=Study.View.choices)

    class Meta:
        model = Study
        fields = ["patient", "view"]


class MonitoringFilter(StrictFilterSet):
    since = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__gte", label="From (date)")
    until = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__lte", label="Until (date)")
    model = django_filters.CharFilter(field_name="model_name", label="Model name")
    population = django_filters.CharFilter(label="Population")

    class Meta:
        model = Prediction
        fields = ["since", "until", "model", "population"]
