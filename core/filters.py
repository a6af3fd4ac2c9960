"""Strict query filters: a value a filter does not know is a 400, never ignored; date-times reach the database in UTC."""

import datetime

import django_filters
from django_filters.fields import IsoDateTimeField

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
            return moment.astimezone(datetime.UTC)
        except OverflowError:
            edge = datetime.datetime.min if moment.year == 1 else datetime.datetime.max
            return edge.replace(tzinfo=datetime.UTC)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class StrictFilterSet(django_filters.FilterSet):
    """A parameter given with an empty value is an error for every filter that is not free text."""

    def is_valid(self):
        valid = super().is_valid()
        for name in self.form.fields:
            if self.data.get(name) == "" and not isinstance(self.filters[name], django_filters.CharFilter):
                self.form.add_error(name, "Give a value, or leave this parameter out.")
                valid = False
        return valid
