from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail (django-auditlog's entries): recording accesses, the middleware, the read-only admin.

    Sits below ``diagnosis``: it imports nothing from the apps whose records it logs (tested).
    """

    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from core import backup, periodic
        from core.sessions import signed_out

        from . import pseudonyms, seals
        from .trail import record_sign_out

        pseudonyms.install()
        backup.after_restore(seals.new_anchor_after_restore)
        periodic.register("seal-audit", "PNEUMOWEB_AUDIT_SEAL_SECONDS", seals.seal_round)

        # Sign-outs the server makes (idle, everywhere) are on the record; core, below, only announces them.
        signed_out.connect(record_sign_out, dispatch_uid="audit.trail.record_sign_out")
