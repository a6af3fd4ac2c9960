"""Streaming CSV downloads, safe to open in a spreadsheet: one helper for every export."""

import csv

from django.http import StreamingHttpResponse
from django.utils import timezone


class _Echo:
    def write(self, value):
        return value


def csv_safe(value):
    # Spreadsheets execute cells starting with these characters (CSV injection).
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_response(rows, name):
    """A streamed ``{name}-YYYYmmdd-HHMM.csv`` download of ``rows`` (an iterable of lists; the first is the header)."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow([csv_safe(cell) for cell in row]) for row in rows),
                                     content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.now():%Y%m%d-%H%M}.csv"'
    return response
