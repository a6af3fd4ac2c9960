"""``manage.py reset_second_factor``: an administrator's way back in for a user who lost their phone and codes."""

import io

import pytest
from axes.models import AccessAttempt
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.second_factor import new_recovery_codes

from ..base import signed_in_client

pytestmark = pytest.mark.django_db


def reset(*args):
    out = io.StringIO()
    call_command("reset_second_factor", *args, stdout=out)
    return out.getvalue()


def test_it_removes_the_app_and_recovery_codes_and_the_user_enrols_again(reviewer):
    client = signed_in_client(reviewer)
    new_recovery_codes(reviewer)
    assert client.get(reverse("review_queue")).status_code == 200
    printed = reset(reviewer.username)
    assert f"Removed 2 second-factor device(s) of '{reviewer.username}'" in printed and "enrol a new one" in printed
    assert not TOTPDevice.objects.filter(user=reviewer).exists() and not StaticDevice.objects.filter(user=reviewer).exists()
    # The session verified with the old app no longer counts: enrolment first.
    assert client.get(reverse("review_queue"))["Location"].startswith(reverse("second_factor_enrol"))


def test_it_unlocks_the_username_on_request(clinician):
    AccessAttempt.objects.create(username=clinician.username, ip_address="10.0.0.1", user_agent="x",
                                 failures_since_start=5, attempt_time=timezone.now())
    printed = reset(clinician.username, "--unlock")
    assert "sign in with the password alone" in printed and "Cleared 1 lockout record(s)" in printed
    assert not AccessAttempt.objects.exists()


def test_it_names_an_unknown_user():
    with pytest.raises(CommandError, match="No user 'nobody'"):
        reset("nobody")
