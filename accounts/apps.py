from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who a user is and how they get in: the roles (``roles.py``, ``manage.py create_user``), sign-in
    with a second factor and the lockout, API tokens (``api.py`` and the token page), the signed-in
    sessions (idle sign-out, sign out everywhere, sessions ended by a password change).

    Sits between ``audit`` and ``diagnosis``: ``diagnosis`` imports from it, never the reverse (tested).
    """

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from auditlog.registry import auditlog
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.core import checks
        from django.db.models.signals import post_save, pre_save
        from django_otp.plugins.otp_static.models import StaticDevice
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from audit.trail import record_sign_out
        from core import backup

        from . import idle, sessions

        # Enrolling, confirming, resetting and removing a second factor go to the audit trail; the
        # secret key, the recovery codes themselves and the throttling counters do not.
        auditlog.register(TOTPDevice, include_fields=["user", "name", "confirmed"])
        auditlog.register(StaticDevice, include_fields=["user", "name"])

        backup.after_restore(sessions.end_every_session_after_restore)
        user = get_user_model()
        user_logged_in.connect(idle.activity_at_sign_in, dispatch_uid="accounts.idle.activity_at_sign_in")
        user_logged_in.connect(sessions.remember_at_sign_in, dispatch_uid="accounts.sessions.remember_at_sign_in")
        user_logged_out.connect(sessions.forget_at_sign_out, dispatch_uid="accounts.sessions.forget_at_sign_out")
        pre_save.connect(sessions.note_password_change, sender=user, dispatch_uid="accounts.sessions.note_password")
        post_save.connect(sessions.end_everything_after_password_change, sender=user,
                          dispatch_uid="accounts.sessions.end_after_password")
        checks.register(sessions.check_session_engine, checks.Tags.security)
        # Sign-outs the server makes (idle, everywhere) are on the record (audit sits below: it is told).
        sessions.signed_out.connect(record_sign_out, dispatch_uid="audit.trail.record_sign_out")
