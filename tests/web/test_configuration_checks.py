"""Rules between settings are system checks (core/checks.py), refused by manage.py, gunicorn and the worker."""

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from core.checks import check_settings_agree, refuse_misconfiguration


def ids(found):
    return [message.id for message in found]


def test_it_finds_nothing_wrong_with_the_test_settings():
    assert check_settings_agree() == []
    refuse_misconfiguration()  # raises nothing


@pytest.mark.parametrize("overrides, check_id, words", [
    ({"PNEUMOWEB_OTP_REQUIRED": False, "PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS": True}, "pneumoweb.E001",
     "PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS=true needs PNEUMOWEB_OTP_REQUIRED=true"),
    ({"PNEUMOWEB_IDLE_WARNING_SECONDS": 900, "PNEUMOWEB_IDLE_TIMEOUT_SECONDS": 900}, "pneumoweb.E002",
     "PNEUMOWEB_IDLE_WARNING_SECONDS must be more than 0 and less than PNEUMOWEB_IDLE_TIMEOUT_SECONDS"),
    ({"PNEUMOWEB_IDLE_WARNING_SECONDS": 0}, "pneumoweb.E002", "must be more than 0"),
    ({"PNEUMOWEB_BATCH_SIZE": 0}, "pneumoweb.E003", "PNEUMOWEB_BATCH_SIZE must be at least 1"),
    ({"PNEUMOWEB_LEASE_SECONDS": 10, "PNEUMOWEB_HEARTBEAT_SECONDS": 5}, "pneumoweb.E004",
     "PNEUMOWEB_LEASE_SECONDS must exceed twice PNEUMOWEB_HEARTBEAT_SECONDS"),
    ({"PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS": -1}, "pneumoweb.E005", "must be 0 or more"),
    ({"PNEUMOWEB_REVIEW_SAMPLE_SHARE": 1.5}, "pneumoweb.E006", "between 0 and 1"),
    ({"PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS": 0}, "pneumoweb.E007", "at least 1"),
    ({"PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL": 1.0}, "pneumoweb.E008", "less than 1"),
    ({"PNEUMOWEB_SENDER_TOKEN_WARN_DAYS": 400}, "pneumoweb.E009", "less than PNEUMOWEB_SENDER_TOKEN_TTL_DAYS"),
])
def test_it_reports_settings_that_disagree(overrides, check_id, words):
    with override_settings(**overrides):
        found = check_settings_agree()
        assert ids(found) == [check_id] and words in found[0].msg and found[0].hint
        assert all(isinstance(message, checks.Error) for message in found)
        with pytest.raises(ImproperlyConfigured, match=check_id):
            refuse_misconfiguration()


def test_every_broken_rule_is_named_at_once():
    with override_settings(PNEUMOWEB_BATCH_SIZE=0, PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS=-5):
        assert ids(check_settings_agree()) == ["pneumoweb.E003", "pneumoweb.E005"]
        with pytest.raises(ImproperlyConfigured, match="E003.*E005"):
            refuse_misconfiguration()


def test_manage_py_check_refuses_them():
    with override_settings(PNEUMOWEB_BATCH_SIZE=0), pytest.raises(SystemCheckError, match="pneumoweb.E003"):
        call_command("check")


def test_the_worker_refuses_to_start_on_them():
    from diagnosis.jobs.worker import refuse_a_misconfigured_worker

    with override_settings(PNEUMOWEB_LEASE_SECONDS=1), pytest.raises(ImproperlyConfigured, match="pneumoweb.E004"):
        refuse_a_misconfigured_worker(sender="celery@test", conf=None)
