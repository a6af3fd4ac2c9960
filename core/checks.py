"""System checks of the deployment's configuration that need not stop the import of the settings.

A value that cannot be read (``PNEUMOWEB_BATCH_SIZE=eight``) still stops the import (pneumoweb/env.py):
nothing sensible can run on it. Rules between readable values live here as Django system checks, so
they are tested in-process with ``override_settings`` and reported with every other check by
``manage.py check``. Errors stop ``migrate`` and ``runserver`` (Django runs the checks there), and
:func:`refuse_misconfiguration` stops gunicorn (pneumoweb/wsgi.py) and the Celery worker
(diagnosis/jobs/worker.py), which Django's own check run does not cover.
"""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


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


def check_settings_agree(app_configs=None, **kwargs):
    """Settings that each read well but together would misbehave."""
    s = settings
    rules = [
        (not s.PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS or s.PNEUMOWEB_OTP_REQUIRED,
         "PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS=true needs PNEUMOWEB_OTP_REQUIRED=true",
         "A second factor required of clinicians but of no one else is not a policy anyone meant.",
         "pneumoweb.E001"),
        (0 < s.PNEUMOWEB_IDLE_WARNING_SECONDS < s.PNEUMOWEB_IDLE_TIMEOUT_SECONDS,
         "PNEUMOWEB_IDLE_WARNING_SECONDS must be more than 0 and less than PNEUMOWEB_IDLE_TIMEOUT_SECONDS",
         "The page warns this many seconds before the idle sign-out; a warning after it never shows.",
         "pneumoweb.E002"),
        (s.PNEUMOWEB_BATCH_SIZE >= 1,
         "PNEUMOWEB_BATCH_SIZE must be at least 1",
         "1 runs each study alone.",
         "pneumoweb.E003"),
        (s.PNEUMOWEB_LEASE_SECONDS > 2 * s.PNEUMOWEB_HEARTBEAT_SECONDS,
         "PNEUMOWEB_LEASE_SECONDS must exceed twice PNEUMOWEB_HEARTBEAT_SECONDS",
         "A lease shorter than two heartbeats lets the reconciler requeue a study its worker is still running.",
         "pneumoweb.E004"),
        (s.PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS >= 0,
         "PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS must be 0 or more",
         "It is how old an audit entry must be before it is sealed.",
         "pneumoweb.E005"),
        (0.0 <= s.PNEUMOWEB_REVIEW_SAMPLE_SHARE <= 1.0,
         "PNEUMOWEB_REVIEW_SAMPLE_SHARE must be between 0 and 1",
         "It is the share of accepted studies drawn into the random review sample (0.05: one in twenty).",
         "pneumoweb.E006"),
        (s.PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS >= 1,
         "PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS must be at least 1",
         "A site point fitted on no confirmed patient of a class would be no evidence at all.",
         "pneumoweb.E007"),
        (0.0 <= s.PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL < 1.0,
         "PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL must be 0 or more and less than 1",
         "How far under the recall floor the lower end of a refit point's recall interval may lie.",
         "pneumoweb.E008"),
        (1 <= s.PNEUMOWEB_SENDER_TOKEN_WARN_DAYS < s.PNEUMOWEB_SENDER_TOKEN_TTL_DAYS,
         "PNEUMOWEB_SENDER_TOKEN_WARN_DAYS must be at least 1 and less than PNEUMOWEB_SENDER_TOKEN_TTL_DAYS",
         "Monitoring warns this many days before a PACS sender's token ends; a warning as long as the token's "
         "life would never be silent.",
         "pneumoweb.E009"),
    ]
    return [checks.Error(message, hint=hint, id=id) for ok, message, hint, id in rules if not ok]


def refuse_misconfiguration():
    """Raise ImproperlyConfigured naming every failed configuration rule (for processes Django's checks skip)."""
    errors = check_settings_agree()
    if errors:
        raise ImproperlyConfigured("; ".join(f"{error.msg} ({error.id})" for error in errors))
