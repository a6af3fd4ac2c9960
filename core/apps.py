from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Plumbing every app uses: middleware, throttling, strict filters, CSV export, charts, error pages,
    backup and restore, stored files, and the periodic jobs' registry and scheduler.

    The lowest Django layer: imports nothing from the project's other apps (tested).
    """

    name = "core"
    verbose_name = "Core"

    def ready(self):
        from django.core import checks

        from .checks import check_settings_agree, check_unknown_environment

        checks.register(check_unknown_environment)
        checks.register(check_settings_agree)
