from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Plumbing every app uses: middleware, throttling, strict filters, CSV export, charts, error pages.

    The lowest Django layer: imports nothing from the project's other apps (tested).
    """

    name = "core"
    verbose_name = "Core"
