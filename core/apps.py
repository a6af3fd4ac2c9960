from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Plumbing every app uses: middleware, throttling, strict filters, CSV export, charts, error pages;
    and the signed-in sessions: idle sign-out, sign-out everywhere, sessions ended by a password change.

    The lowest Django layer: imports nothing from the project's other apps (tested).
    """

    name = "core"
    verbose_name = "Core"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.core import checks
        from django.db.models.signals import post_save, pre_save

        from . import backup, idle, sessions
        from .checks import check_unknown_environment

        backup.after_restore(sessions.end_every_session_after_restore)

        user = get_user_model()
        user_logged_in.connect(idle.activity_at_sign_in, dispatch_uid="core.idle.activity_at_sign_in")
        user_logged_in.connect(sessions.remember_at_sign_in, dispatch_uid="core.sessions.remember_at_sign_in")
        user_logged_out.connect(sessions.forget_at_sign_out, dispatch_uid="core.sessions.forget_at_sign_out")
        pre_save.connect(sessions.note_password_change, sender=user, dispatch_uid="core.sessions.note_password")
        post_save.connect(sessions.end_everything_after_password_change, sender=user,
                          dispatch_uid="core.sessions.end_after_password")
        checks.register(sessions.check_session_engine, checks.Tags.security)
        checks.register(check_unknown_environment)
