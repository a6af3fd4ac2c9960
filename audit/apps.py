from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail (django-auditlog's entries): recording accesses, the middleware, the read-only admin.

    Sits below ``diagnosis``: it imports nothing from the apps whose records it logs (tested).
    """

    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        from core import backup, periodic

        from . import pseudonyms, seals, trail

        pseudonyms.install()
        # Sign-ins, failed sign-ins and sign-outs on the trail under their own names, with the address.
        user_logged_in.connect(trail.record_signed_in, dispatch_uid="audit.trail.record_signed_in")
        user_logged_out.connect(trail.record_signed_out, dispatch_uid="audit.trail.record_signed_out")
        user_login_failed.connect(trail.record_sign_in_failed, dispatch_uid="audit.trail.record_sign_in_failed")
        backup.after_restore(seals.new_anchor_after_restore)
        periodic.register("seal-audit", "PNEUMOWEB_AUDIT_SEAL_SECONDS", "audit.seals.seal_round",
                          "Seal the audit entries older than PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS.")

