from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self):
        from auditlog.registry import auditlog
        from django.core import checks

        from core import backup, periodic

        from . import erasure
        from .jobs import lease, worker
        from .models import Erasure, Patient, Prediction, Report, SiteOperatingPoint, Study

        # Changes to these rows go to the audit trail (audit/); files, FHIR and lease bookkeeping do not.
        # Personal values are masked by keyed hashes and rows are named by pseudonyms (audit_name()):
        # an erasure removes the patient, and the sealed trail must not keep them (audit/pseudonyms.py).
        masked = {"mask_callable": "audit.pseudonyms.mask"}
        auditlog.register(Patient, mask_fields=["name", "mrn", "date_of_birth"], **masked)
        # A file's sha256 is left out too: it would link the trail to copies of the film kept elsewhere.
        auditlog.register(Study, exclude_fields=["image", "image_sha256"],
                          mask_fields=["original_filename", "notes", "source_notes"], **masked)
        auditlog.register(Prediction, exclude_fields=["heatmap", "heatmap_cnn", "heatmap_vit", "heatmap_sha256",
                                                      "heatmap_cnn_sha256", "heatmap_vit_sha256", "heartbeat_at",
                                                      "lease_token", "dispatched_at"],
                          mask_fields=["review_comment"], **masked)
        auditlog.register(Report, exclude_fields=["pdf", "pdf_sha256", "fhir", "review_state"])
        auditlog.register(Erasure, mask_fields=["reason"], **masked)
        auditlog.register(SiteOperatingPoint)
        worker.connect()
        jobs = "diagnosis.jobs.dispatch."
        periodic.register("requeue-and-resend", "PNEUMOWEB_RECONCILE_SECONDS", jobs + "requeue_and_resend",
                          "Requeue jobs whose worker was lost; send again the ones the broker lost.")
        periodic.register("sweep-orphan-files", "PNEUMOWEB_SWEEP_SECONDS", jobs + "sweep_orphan_files",
                          "Delete stored files no row names, past PNEUMOWEB_ORPHAN_GRACE_SECONDS.")
        periodic.register("forget-idempotency-keys", "PNEUMOWEB_SWEEP_SECONDS", jobs + "forget_idempotency_keys",
                          "Forget Idempotency-Keys past PNEUMOWEB_IDEMPOTENCY_TTL_HOURS.")
        # After a restore: first the erasures made since the backup, then the jobs left in flight.
        checks.register(erasure.check_erasure_log)
        backup.before_restore(erasure.check_log)
        backup.after_restore(erasure.reapply_logged)
        backup.after_restore(lease.requeue_after_restore)
