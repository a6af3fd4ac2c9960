"""Strict query filters: a value a filter does not know is a 400, never ignored; date-times reach the database in UTC."""

import datetime
import re

import django_filters
from django_filters.fields import IsoDateTimeField

BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?\Z")


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
            value = self.data.get(name)
            if value == "" and not isinstance(self.filters[name], django_filters.CharFilter):
                self.form.add_error(name, "Give a value, or leave this parameter out.")
                valid = False
            elif value and isinstance(self.filters[name], django_filters.NumberFilter) and not PLAIN_NUMBER.match(value):
                # Django's DecimalField also takes " 8" and "+8": a number here is written plainly.
                self.form.add_error(name, "Give a plain number (digits, an optional minus sign and decimals).")
                valid = False
        return valid
