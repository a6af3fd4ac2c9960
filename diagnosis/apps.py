from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self):
        from auditlog.registry import auditlog

        from .jobs import worker
        from .models import Patient, Prediction, Report, Study

        # Changes to these rows go to the audit trail (audit/); files, FHIR and lease bookkeeping do not.
        auditlog.register(Patient)
        auditlog.register(Study, exclude_fields=["image"])
        auditlog.register(Prediction, exclude_fields=["heatmap", "heatmap_cnn", "heatmap_vit", "heartbeat_at",
                                                      "lease_token", "dispatched_at"])
        auditlog.register(Report, exclude_fields=["pdf", "fhir"])
        worker.connect()
