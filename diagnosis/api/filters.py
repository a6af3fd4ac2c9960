import django_filters

from ..models import Prediction


class PredictionFilter(django_filters.FilterSet):
    patient = django_filters.NumberFilter(field_name="study__patient_id")
    mrn = django_filters.CharFilter(field_name="study__patient__mrn")
    queued_after = django_filters.IsoDateTimeFilter(field_name="queued_at", lookup_expr="gte")
    queued_before = django_filters.IsoDateTimeFilter(field_name="queued_at", lookup_expr="lt")
    date = django_filters.DateFilter(field_name="queued_at", lookup_expr="date")
    reviewed = django_filters.BooleanFilter(method="filter_reviewed")

    class Meta:
        model = Prediction
        fields = ["status", "label", "patient", "mrn", "date", "queued_after", "queued_before", "reviewed"]

    def filter_reviewed(self, queryset, name, value):
        return queryset.exclude(review_verdict="") if value else queryset.filter(review_verdict="")
