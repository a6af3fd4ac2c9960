from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Signing in: the second factor (one-time codes) after the password, and who must have one.

    Sits between ``audit`` and ``diagnosis``: the token endpoint (diagnosis/api/auth.py) asks it
    whether a code is needed; it imports nothing from the apps above it (tested).
    """

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from auditlog.registry import auditlog
        from django_otp.plugins.otp_static.models import StaticDevice
        from django_otp.plugins.otp_totp.models import TOTPDevice

        # Enrolling, confirming, resetting and removing a second factor go to the audit trail; the
        # secret key, the recovery codes themselves and the throttling counters do not.
        auditlog.register(TOTPDevice, include_fields=["user", "name", "confirmed"])
        auditlog.register(StaticDevice, include_fields=["user", "name"])
