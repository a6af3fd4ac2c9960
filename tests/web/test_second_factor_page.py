"""/account/second-factor/: whether it is on, new recovery codes, turning it off where it is not required."""

import re

import pytest
from auditlog.models import LogEntry
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.second_factor import new_recovery_codes

from ..base import enrol_totp, totp_code, verify_session

pytestmark = pytest.mark.django_db

URL = reverse("second_factor")


@pytest.fixture
def clinician_with_app(logged_in, clinician):
    device = enrol_totp(clinician)
    new_recovery_codes(clinician)
    verify_session(logged_in, clinician)
    return device


def codes_on(html):
    return re.findall(r"<li>([a-z2-7]{8})</li>", html)


def test_it_says_whether_it_is_on_and_how_many_recovery_codes_are_left(logged_in, clinician_with_app):
    html = logged_in.get(URL).content.decode()
    assert 'data-testid="second-factor-status">On:' in html and 'data-testid="recovery-codes-left">10<' in html
    assert 'data-testid="second-factor-remove"' in html  # a clinician may turn it off


def test_it_replaces_the_recovery_codes_and_shows_the_new_ones_once(logged_in, clinician, clinician_with_app):
    old = set(StaticToken.objects.filter(device__user=clinician).values_list("token", flat=True))
    response = logged_in.post(URL, {"action": "recovery-codes"})
    new = codes_on(response.content.decode())
    assert len(new) == 10 and not old & set(new)
    assert set(StaticToken.objects.filter(device__user=clinician).values_list("token", flat=True)) == set(new)
    assert not any(code in logged_in.get(URL).content.decode() for code in new)


def test_it_turns_off_after_a_code_where_it_is_not_required(logged_in, clinician, clinician_with_app):
    refused = logged_in.post(URL, {"action": "remove", "otp_token": "000000" if totp_code(clinician_with_app) != "000000" else "111111"})
    assert "That code is wrong" in refused.content.decode() and TOTPDevice.objects.filter(user=clinician).exists()
    clinician_with_app.throttle_reset()
    response = logged_in.post(URL, {"action": "remove", "otp_token": totp_code(clinician_with_app)}, follow=True)
    assert "Your second factor is off" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=clinician).exists() and not StaticToken.objects.exists()
    assert logged_in.get(reverse("dashboard")).status_code == 200  # still signed in, password alone from now
    removed = LogEntry.objects.filter(action=LogEntry.Action.DELETE, content_type__model="totpdevice")
    assert removed.count() == 1 and "key" not in removed.get().changes_dict  # on the audit trail, without the secret


def test_it_cannot_be_turned_off_where_it_is_required(reviewer_client, reviewer):
    device = TOTPDevice.objects.get(user=reviewer)
    html = reviewer_client.get(URL).content.decode()
    assert 'data-testid="second-factor-remove"' not in html and "cannot be turned off here" in html
    reviewer_client.post(URL, {"action": "remove", "otp_token": totp_code(device)})
    assert TOTPDevice.objects.filter(user=reviewer).exists()


def test_it_offers_enrolment_to_a_clinician_without_one(logged_in):
    html = logged_in.get(URL).content.decode()
    assert "Off: you sign in with your password alone." in html and reverse("second_factor_enrol") in html
