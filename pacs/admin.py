"""What came in over DICOM and what went back, for administrators (read-only but for destinations)."""

from django.contrib import admin, messages
from django.utils import timezone

from core.admin import ReadOnlyAdmin as ReadOnly

from . import exports, send
from .models import Destination, Export, ImagingStudy, Instance


class InstanceInline(admin.TabularInline):
    model = Instance
    fields = ("sop_instance_uid", "modality", "view_position", "body_part", "outcome", "skip_reason",
              "received_from", "received_at", "study")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ImagingStudy)
class ImagingStudyAdmin(ReadOnly):
    list_display = ("study_instance_uid", "patient", "accession_number", "first_received_at", "last_received_at",
                    "assessed_at")
    search_fields = ("study_instance_uid", "accession_number", "patient__mrn")
    inlines = [InstanceInline]


@admin.register(Instance)
class InstanceAdmin(ReadOnly):
    list_display = ("sop_instance_uid", "imaging_study", "modality", "view_position", "outcome", "skip_reason",
                    "received_from", "received_at")
    list_filter = ("outcome", "modality")
    search_fields = ("sop_instance_uid", "imaging_study__study_instance_uid")
    exclude = ("header",)


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "url", "ae_title", "host", "port", "enabled")
    actions = ["test_connection"]

    @admin.action(description="Test the connection (C-ECHO, or a DICOMweb request): sends no result")
    def test_connection(self, request, queryset):
        for destination in queryset:
            outcome = send.check_connection(exports.as_destination(destination))
            if outcome.sent:
                self.message_user(request, f"{destination}: answered.", messages.SUCCESS)
            else:
                self.message_user(request, f"{destination}: {outcome.error}", messages.ERROR)


@admin.register(Export)
class ExportAdmin(ReadOnly):
    list_display = ("pk", "kind", "destination", "instance", "prediction", "revision", "status", "attempts",
                    "last_error", "created_at", "sent_at", "next_attempt_at")
    list_filter = ("status", "kind", "destination")
    search_fields = ("sop_instance_uid", "instance__sop_instance_uid")
    actions = ["send_again"]

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser  # for the action; every field stays read-only

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    @admin.action(description="Send again (also what failed for good)")
    def send_again(self, request, queryset):
        count = queryset.update(status=Export.Status.PENDING, attempts=0, last_error="",
                                next_attempt_at=timezone.now(), sent_at=None)
        self.message_user(request, f"{count} export(s) will be sent in the next round.", messages.SUCCESS)
