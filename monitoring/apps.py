from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """How the model does in use: per model version and population, against the reviewers' verdicts.

    Reads ``diagnosis``' predictions; nothing below imports it (tested).
    """

    name = "monitoring"
    verbose_name = "Monitoring"
