from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail (django-auditlog's entries): recording accesses, the middleware, the read-only admin.

    Sits below ``diagnosis``: it imports nothing from the apps whose records it logs (tested).
    """

    name = "audit"
    verbose_name = "Audit trail"
