"""The audit trail in the admin: read-only, for administrators, filterable, exportable as CSV.

``AuditedCsvExport`` is every admin's CSV export, with the export itself on the record.
"""

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin

from core.csv_export import CsvExportMixin

from .pseudonyms import masked_query
from .trail import record_access

# Ours replaces django-auditlog's own admin of its entries ("audit" comes after "auditlog" in INSTALLED_APPS).
admin.site.unregister(LogEntry)


class AuditedCsvExport(CsvExportMixin):
    """A change list's CSV export that records who exported what, with the query used."""

    csv_what = None  # what the audit entry says was exported; default "<csv_name> CSV"

    def exported(self, request):
        record_access(request, "export", request.user, what=self.csv_what or f"{self.csv_name} CSV",
               query=masked_query(request.GET.urlencode()))


def audit_what(entry):
    """view / download report PDF / export … for an access, else the change (create, update, delete)."""
    data = entry.additional_data or {}
    if entry.action == LogEntry.Action.ACCESS:
        return " ".join(str(part) for part in (data.get("action", "access"), data.get("what", "")) if part)
    return entry.get_action_display()


@admin.register(LogEntry)
class AuditTrailAdmin(AuditedCsvExport, LogEntryAdmin):
    """Who created, changed, viewed, downloaded, exported or reviewed what, when and from where.

    Append-only (no add, change or delete), administrators only, filterable, exportable as CSV.
    """

    list_display = ["created", "actor", "action", "what", "resource_url", "remote_addr"]
    list_filter = ["action", "content_type", "timestamp", ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["object_repr", "actor__username", "remote_addr"]
    change_list_template = "admin/audit/audit_change_list.html"
    csv_name = "audit-trail"
    csv_what = "audit trail CSV"
    csv_select_related = ("actor", "content_type")
    csv_columns = [
        ("timestamp", lambda e: e.timestamp.isoformat()),
        ("actor", lambda e: e.actor.get_username() if e.actor else ""),
        ("action", lambda e: e.get_action_display()),
        ("what", lambda e: audit_what(e)),
        ("object_type", lambda e: e.content_type.model),
        ("object_id", lambda e: e.object_pk),
        ("object", lambda e: e.object_repr),
        ("remote_addr", lambda e: e.remote_addr or ""),
        ("details", lambda e: "" if not e.additional_data else str(e.additional_data)),
    ]

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="What")
    def what(self, entry):
        return audit_what(entry)
