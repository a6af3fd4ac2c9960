from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self):
        from . import audit  # noqa: F401 - registers the models with django-auditlog
