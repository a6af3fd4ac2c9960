"""System checks of the deployment's configuration that need not stop the import of the settings."""

from django.conf import settings
from django.core import checks


def check_unknown_environment(app_configs=None, **kwargs):
    """A PNEUMOWEB_* variable that no setting reads: most likely a typo that leaves a default in force."""
    return [
        checks.Warning(
            f"{name} is set, but PneumoWeb has no such setting: it changes nothing.",
            hint=f"Did you mean {closest}?" if closest else "See the settings table in README.md.",
            id="pneumoweb.W001",
        )
        for name, closest in getattr(settings, "PNEUMOWEB_UNKNOWN_ENVIRONMENT", [])
    ]
