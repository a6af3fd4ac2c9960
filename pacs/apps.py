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

        from core import periodic
        from diagnosis.erasure import patient_erasing

        from .erasure import erase_pacs_rows
        from .models import Destination, Instance

        patient_erasing.connect(erase_pacs_rows, dispatch_uid="pacs.erasure.erase_pacs_rows")
        # Dotted paths: pacs.housekeeping imports highdicom, which no web process needs at start.
        periodic.register("pacs-round", "PNEUMOWEB_PACS_TICK_SECONDS", "pacs.housekeeping.tick",
                          "Close quiet DICOM studies, queue their results, send what is due.")
        periodic.register("sweep-held-pixels", "PNEUMOWEB_PACS_SWEEP_SECONDS", "pacs.housekeeping.sweep_round",
                          "Delete held DICOM pixels no instance names, past PNEUMOWEB_ORPHAN_GRACE_SECONDS.")

        # Who sent what, when, and what was skipped and why, in the audit trail beside the records'
        # changes; the header (identifiers) and the held pixels stay out of it.
        # DICOM UIDs and notes identify the patient's study at the source: masked, as diagnosis masks its own.
        auditlog.register(Instance, exclude_fields=["header", "pixels", "pixels_sha256"],
                          mask_fields=["sop_instance_uid", "series_instance_uid", "notes"],
                          mask_callable="audit.pseudonyms.mask")
        auditlog.register(Destination)
