"""Streaming CSV downloads, safe to open in a spreadsheet: one helper for every export."""

import csv

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
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


class CsvExportMixin:
    """An ``export.csv`` URL beside an admin change list (named ``admin:<app>_<model>_export``).

    The file holds the rows the change list shows — the same filters and search as the page the
    link came from — with ``csv_columns`` ([(header, getter)]) as columns. ``exported(request)``
    is called before the download starts: the audit trail records it there.
    """

    csv_columns = []
    csv_name = "export"
    csv_select_related = ()

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        return [path("export.csv", self.admin_site.admin_view(self.export_csv), name=name), *super().get_urls()]

    def exported(self, request):
        """Hook: the export is about to be sent."""

    def export_csv(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # What the change list itself does with a filter it cannot apply.
            changelist_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return HttpResponseRedirect(changelist_url + "?e=1")
        queryset = changelist.get_queryset(request).select_related(*self.csv_select_related)
        self.exported(request)

        def rows():
            yield [name for name, _ in self.csv_columns]
            for instance in queryset.iterator(chunk_size=500):
                yield [get(instance) for _, get in self.csv_columns]

        return csv_response(rows(), self.csv_name)
