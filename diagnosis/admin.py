from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from audit.admin import AuditedCsvExport
from audit.pseudonyms import patient_pseudonym
from core.admin import ReadOnlyAdmin

from .erasure import ErasureRefused, approve, request_erasure
from .models import Erasure, Patient, Prediction, Study
from .permissions import can_review, visible_patients, visible_predictions, visible_studies
from .services import apply_review, review_errors


class OwnedQuerysetMixin:
    """Admin lists follow the same visibility rules as pages and API."""

    visible = None

    def get_queryset(self, request):
        return type(self).visible(request.user)


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("yes", "Reviewed"), ("no", "Not reviewed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(review_verdict="")
        if self.value() == "no":
            return queryset.filter(review_verdict="")
        return queryset


class WarningsFilter(admin.SimpleListFilter):
    title = "intended use"
    parameter_name = "warned"

    def lookups(self, request, model_admin):
        return [("yes", "Outside validated use"), ("no", "Within validated use")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(warnings=[])
        if self.value() == "no":
            return queryset.filter(warnings=[])
        return queryset


@admin.register(Patient)
class PatientAdmin(OwnedQuerysetMixin, admin.ModelAdmin):
    visible = staticmethod(visible_patients)
    list_display = ["mrn", "name", "sex", "date_of_birth", "owner", "created_at", "pseudonym"]
    list_filter = ["sex", "owner"]
    search_fields = ["mrn", "name"]
    actions = ["erase_data"]

    @admin.display(description="Audit pseudonym")
    def pseudonym(self, patient):
        return patient_pseudonym(patient.pk)

    def has_delete_permission(self, request, obj=None):
        return False  # a patient's records go only by erasure: reason, audit, files, erasure log

    def has_erase_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    @admin.action(description="Erase the selected patients' data (studies, files, predictions, reports)…",
                  permissions=["erase"])
    def erase_data(self, request, queryset):
        reason = request.POST.get("reason", "").strip()
        if "confirm" not in request.POST or not reason:
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "patients": [
                (patient, patient_pseudonym(patient.pk), patient.studies.count()) for patient in queryset],
                "two_person": settings.PNEUMOWEB_ERASURE_TWO_PERSON, "missing_reason": "confirm" in request.POST,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "title": "Erase patients' data"}
            return TemplateResponse(request, "admin/diagnosis/erase_confirmation.html", context)
        for patient in queryset:
            name = patient_pseudonym(patient.pk)
            try:
                erasure = request_erasure(patient, by=request.user, reason=reason)
            except ErasureRefused as refused:
                self.message_user(request, f"Patient {name}: {refused}", messages.ERROR)
                continue
            if erasure.status == Erasure.Status.DONE:
                self.message_user(request, f"Patient {name}: erased ({len(erasure.erased['studies'])} studies, "
                                           f"{erasure.erased['files']} files).", messages.SUCCESS)
            else:
                self.message_user(request, f"Patient {name}: erasure requested; a second administrator must "
                                           "approve it under Erasures.", messages.WARNING)
        return None


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    """Erasures requested and done: read-only; with the two-person rule, approved here by another administrator."""

    list_display = ["pk", "patient_pseudonym", "status", "requested_by", "requested_at", "approved_by", "done_at"]
    list_filter = ["status"]
    readonly_fields = [field.name for field in Erasure._meta.fields]
    actions = ["approve_erasures"]

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_approve_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    @admin.action(description="Approve and carry out the selected erasures", permissions=["approve"])
    def approve_erasures(self, request, queryset):
        for erasure in queryset:
            try:
                approve(erasure, by=request.user)
            except ErasureRefused as refused:
                self.message_user(request, f"Erasure {erasure.pk}: {refused}", messages.ERROR)
            else:
                self.message_user(request, f"Erasure {erasure.pk}: patient {erasure.patient_pseudonym} erased.",
                                  messages.SUCCESS)


class AdminStyles:
    # Sizes and overlays come from a stylesheet: the Content-Security-Policy allows no inline style.
    class Media:
        css = {"all": ["css/admin.css"]}


@admin.register(Study)
class StudyAdmin(AdminStyles, OwnedQuerysetMixin, admin.ModelAdmin):
    visible = staticmethod(visible_studies)
    list_display = ["id", "patient", "age_years", "view", "uploaded_by", "uploaded_at"]
    list_filter = ["view", "uploaded_at"]
    search_fields = ["patient__mrn"]
    # The stored file has no public URL (MEDIA_URL is None): it is shown through the authenticated view.
    readonly_fields = ["image_link" if f.name == "image" else f.name for f in Study._meta.fields]
    fields = readonly_fields

    @admin.display(description="Image")
    def image_link(self, obj):
        url = reverse("study_image", args=[obj.pk])
        return format_html('<a href="{}"><img src="{}" alt="X-ray" class="pw-xray"></a>', url, url)

    def has_add_permission(self, request):
        return False  # studies come in through the upload form or the API, which validate the image


class PredictionReviewForm(forms.ModelForm):
    """The same review rules as the API: a disagreement names the corrected label."""

    class Meta:
        model = Prediction
        fields = "__all__"

    def clean(self):
        data = super().clean()
        if "review_verdict" not in self.fields:
            return data  # the review is read-only here
        errors = review_errors(
            verdict=data.get("review_verdict"), label=data.get("review_label"), comment=data.get("review_comment")
        )
        for field, message in errors.items():
            self.add_error(field, message)
        return data


@admin.register(Prediction)
class PredictionAdmin(AuditedCsvExport, AdminStyles, OwnedQuerysetMixin, admin.ModelAdmin):
    visible = staticmethod(visible_predictions)
    form = PredictionReviewForm
    list_display = [
        "id", "thumbnail", "patient_mrn", "label", "probability_display", "status",
        "model_version", "within_validated_use", "is_reviewed", "queued_at",
    ]
    list_filter = ["label", "status", "ood", "model_name", "model_sha256", ReviewedFilter, WarningsFilter,
                   "review_verdict", "queued_at"]
    search_fields = ["study__patient__mrn"]
    date_hierarchy = "queued_at"
    list_select_related = ["study__patient"]
    fieldsets = [
        (None, {"fields": ["image_preview", "study", "patient_mrn", "status", "label", "probability_display", "threshold_display",
                           "borderline", "population",
                           "ood", "ood_reason", "warnings_display"]}),
        ("Bacterial or viral (secondary)", {"fields": ["subtype", "subtype_probability", "subtype_validation"]}),
        ("Model", {"fields": ["model_name", "model_sha256"]}),
        ("Timings", {"fields": ["queued_at", "started_at", "finished_at", "attempts", "error"]}),
        ("Review", {"fields": ["review_verdict", "review_label", "review_comment", "reviewed_by", "reviewed_at"]}),
    ]
    EDITABLE = ("review_verdict", "review_label", "review_comment")

    def get_readonly_fields(self, request, obj=None):
        fields = [f.name for f in Prediction._meta.fields if f.name not in self.EDITABLE]
        fields += ["image_preview", "patient_mrn", "warnings_display", "probability_display", "threshold_display"]
        if obj is None or obj.status not in Prediction.OUTCOMES or not can_review(request.user):
            fields += list(self.EDITABLE)
        return fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the audit trail is kept

    def save_model(self, request, obj, form, change):
        if any(name in form.changed_data for name in self.EDITABLE):
            apply_review(
                obj, verdict=obj.review_verdict, label=obj.review_label, comment=obj.review_comment,
                reviewer=request.user,
            )
        super().save_model(request, obj, form, change)

    @admin.display(description="Image")
    def thumbnail(self, obj):
        url = reverse("study_thumbnail", args=[obj.study_id])
        return format_html('<img src="{}" alt="X-ray" class="pw-thumbnail">', url)

    @admin.display(description="Image")
    def image_preview(self, obj):
        """The X-ray, with the combined heatmap laid over it when the job stored one."""
        image = format_html('<img src="{}" alt="X-ray" class="pw-xray">', reverse("study_image", args=[obj.study_id]))
        if not obj.heatmap:
            return image
        heatmap = reverse("prediction_heatmap", args=[obj.pk, "combined"])
        # Only the maps the job stored: v4 stores no ViT map (it did not pass the pointing test).
        links = format_html_join(" · ", '<a href="{}">{}</a>', (
            (reverse("prediction_heatmap", args=[obj.pk, branch]), title)
            for branch, title in (("combined", "combined"), ("cnn", "CNN"), ("vit", "ViT"))
            if getattr(obj, Prediction.HEATMAP_BRANCHES[branch])))
        return format_html(
            '<div class="pw-overlay">{}<img src="{}" alt="Heatmap" class="heatmap-overlay"></div><p>Heatmap: {}</p>',
            image, heatmap, links,
        )

    @admin.display(description="MRN", ordering="study__patient__mrn")
    def patient_mrn(self, obj):
        return obj.study.patient.mrn

    @admin.display(description="P(pneumonia)", ordering="probability")
    def probability_display(self, obj):
        return "" if obj.probability is None else f"{obj.probability:.3f}"

    @admin.display(description="Screening threshold")
    def threshold_display(self, obj):
        return "" if obj.threshold is None else f"{obj.threshold:.3f}"

    @admin.display(description="Model")
    def model_version(self, obj):
        return obj.model_version

    @admin.display(description="Within validated use", boolean=True)
    def within_validated_use(self, obj):
        return None if obj.status != Prediction.Status.SUCCEEDED else not obj.warnings

    @admin.display(description="Intended-use warnings")
    def warnings_display(self, obj):
        return format_html_join(mark_safe("<br>"), "{}", ((w,) for w in obj.warnings)) or "—"

    @admin.display(description="Reviewed", boolean=True)
    def is_reviewed(self, obj):
        return obj.is_reviewed

    csv_name = "predictions"
    csv_select_related = ("study__patient", "reviewed_by")
    csv_columns = [
        ("id", lambda p: p.pk),
        ("mrn", lambda p: p.study.patient.mrn),
        ("patient", lambda p: p.study.patient.name),
        ("study", lambda p: p.study_id),
        ("age_years", lambda p: p.study.age_years),
        ("status", lambda p: p.status),
        ("label", lambda p: p.label),
        ("probability", lambda p: "" if p.probability is None else f"{p.probability:.6f}"),
        ("threshold", lambda p: "" if p.threshold is None else p.threshold),
        ("population", lambda p: p.population),
        ("ood", lambda p: "" if p.ood is None else str(p.ood).lower()),
        ("ood_reason", lambda p: p.ood_reason),
        ("warnings", lambda p: " | ".join(p.warnings)),
        ("subtype", lambda p: p.subtype),
        ("subtype_probability", lambda p: "" if p.subtype_probability is None else f"{p.subtype_probability:.4f}"),
        ("model_name", lambda p: p.model_name),
        ("model_sha256", lambda p: p.model_sha256),
        ("queued_at", lambda p: p.queued_at.isoformat()),
        ("finished_at", lambda p: p.finished_at.isoformat() if p.finished_at else ""),
        ("review_verdict", lambda p: p.review_verdict),
        ("review_label", lambda p: p.review_label),
        ("review_comment", lambda p: p.review_comment),
        ("reviewed_by", lambda p: p.reviewed_by.username if p.reviewed_by else ""),
        ("reviewed_at", lambda p: p.reviewed_at.isoformat() if p.reviewed_at else ""),
    ]
