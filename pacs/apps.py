from django.apps import AppConfig


class PacsConfig(AppConfig):
    """The hospital's path: studies received over DICOM (C-STORE, STOW-RS), results sent back as DICOM.

    Sits above ``diagnosis`` (beside ``monitoring``): it makes ``diagnosis`` records through
    ``diagnosis.services`` like an upload does; nothing below imports it (tests/test_layers.py).
    """

    name = "pacs"
    verbose_name = "PACS (DICOM in and out)"

    def ready(self):
        from auditlog.registry import auditlog

        from .models import Destination, Instance

        # Who sent what, when, and what was skipped and why, in the audit trail beside the records'
        # changes; the header (identifiers) and the held pixels stay out of it.
        auditlog.register(Instance, exclude_fields=["header", "pixels"])
        auditlog.register(Destination)
