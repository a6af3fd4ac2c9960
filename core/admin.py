"""The admin's base for records nobody edits by hand, and the periodic jobs' page (read only)."""

from django.contrib import admin
from django.utils.text import Truncator

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

    # The outcome beside the name (a phone shows the first columns), and what the round did cut short:
    # a failed round's whole error (up to 2,000 characters) is on the job's own page.
    list_display = ("name", "last_outcome", "last_started", "what_it_did", "last_seconds", "last_host", "next_due")
    list_filter = ("last_outcome",)
    readonly_fields = [field.name for field in PeriodicJob._meta.fields]

    @admin.display(description="last detail")
    def what_it_did(self, job):
        return Truncator(job.last_detail).chars(100)
