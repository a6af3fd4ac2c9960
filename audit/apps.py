from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail (django-auditlog's entries): recording accesses, the middleware, the read-only admin.

    Sits below ``diagnosis``: it imports nothing from the apps whose records it logs (tested).
    """

    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from core import backup, periodic

        from . import pseudonyms, seals

        pseudonyms.install()
        backup.after_restore(seals.new_anchor_after_restore)
        periodic.register("seal-audit", "PNEUMOWEB_AUDIT_SEAL_SECONDS", "audit.seals.seal_round",
                          "Seal the audit entries older than PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS.")

