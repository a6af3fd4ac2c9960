"""The admin's base for records nobody edits by hand, and the periodic jobs' page (read only)."""

from django.contrib import admin

from .models import PeriodicJob


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that the application alone writes: an administrator reads them and changes nothing."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PeriodicJob)
class PeriodicJobAdmin(ReadOnlyAdmin):
    """When each periodic job last ran, where, and how it went (core/periodic.py)."""

    list_display = ("name", "last_started", "last_seconds", "last_outcome", "last_detail", "last_host", "next_due")
    list_filter = ("last_outcome",)
    readonly_fields = [field.name for field in PeriodicJob._meta.fields]
