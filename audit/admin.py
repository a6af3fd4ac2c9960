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
    """view / download report PDF / signed in / sign-in failed … for an access; "review: agree" for a change
    that records a reviewer's verdict; else the change (create, update, delete)."""
    data = entry.additional_data or {}
    if entry.action == LogEntry.Action.ACCESS:
        return " ".join(str(part) for part in (data.get("action", "access"), data.get("what", "")) if part)
    verdict = (entry.changes_dict or {}).get("review_verdict")
    if entry.action == LogEntry.Action.UPDATE and verdict and verdict[-1] not in ("", "None", None):
        return f"review: {verdict[-1]}"
    return entry.get_action_display()


class WhatFilter(admin.SimpleListFilter):
    """The kinds of entry an administrator looks for, by their own names."""

    title = "what"
    parameter_name = "what"
    ACCESSES = ("signed in", "sign-in failed", "signed out", "sign out", "view", "download", "export",
                "integrity failure")

    def lookups(self, request, model_admin):
        return [(name, name) for name in self.ACCESSES] + [("review", "review")]

    def queryset(self, request, queryset):
        if self.value() == "review":
            return queryset.filter(action=LogEntry.Action.UPDATE, changes__has_key="review_verdict")
        if self.value() in self.ACCESSES:
            return queryset.filter(action=LogEntry.Action.ACCESS, additional_data__action=self.value())
        return queryset


@admin.register(LogEntry)
class AuditTrailAdmin(AuditedCsvExport, LogEntryAdmin):
    """Who created, changed, viewed, downloaded, exported or reviewed what, when and from where.

    Append-only (no add, change or delete), administrators only, filterable, exportable as CSV.
    """

    list_display = ["created", "actor", "action", "what", "resource_url", "remote_addr"]
    list_filter = [WhatFilter, "action", "content_type", "timestamp", ("actor", admin.RelatedOnlyFieldListFilter)]
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
