"""Signing in with a second factor: the password (/accounts/login/), then a one-time code (/accounts/code/)."""

import re

import pytest
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import pending
from accounts.second_factor import new_recovery_codes

from ..base import enrol_totp, totp_code
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN, CODE = reverse("login"), reverse("second_factor_code")


@pytest.fixture
def device(reviewer):
    return enrol_totp(reviewer)


def password_step(client, user, **extra):
    return client.post(LOGIN, {"username": user.username, "password": PASSWORD, **extra})


def test_it_asks_for_a_code_after_the_password_and_signs_nobody_in_before(client, reviewer, device):
    response = password_step(client, reviewer)
    assert response.status_code == 302 and response["Location"] == CODE
    assert "_auth_user_id" not in client.session  # not signed in yet
    page = client.get(CODE)
    assert page.status_code == 200 and f"Signing in as <strong>{reviewer.username}</strong>" in page.content.decode()
    assert client.get(reverse("review_queue"))["Location"].startswith(LOGIN)


def test_a_password_for_another_account_signs_the_browser_out_until_its_code(logged_in, reviewer, device):
    assert password_step(logged_in, reviewer)["Location"] == CODE
    assert "_auth_user_id" not in logged_in.session  # the clinician who was signed in here is not any more
    assert logged_in.get(reverse("dashboard"))["Location"].startswith(LOGIN)


def test_it_signs_in_with_the_apps_code_and_goes_where_it_was_asked(client, reviewer, device):
    password_step(client, reviewer, next="/review/")
    response = client.post(CODE, {"otp_token": totp_code(device)})
    assert response.status_code == 302 and response["Location"] == "/review/"
    assert client.session["_auth_user_id"] == str(reviewer.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get(reverse("review_queue")).status_code == 200


def test_it_signs_in_with_a_recovery_code_once(client, reviewer, device):
    codes = new_recovery_codes(reviewer)
    password_step(client, reviewer)
    response = client.post(CODE, {"otp_token": codes[3].upper()})  # as copied, in any case
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get(reverse("review_queue")).status_code == 200
    client.post(reverse("logout"))

    password_step(client, reviewer)
    again = client.post(CODE, {"otp_token": codes[3]})
    assert again.status_code == 200 and "That code is wrong, expired or already used." in again.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_refuses_a_wrong_code_and_a_code_already_used(client, reviewer, device):
    password_step(client, reviewer)
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    response = client.post(CODE, {"otp_token": wrong})
    assert response.status_code == 200 and "That code is wrong" in response.content.decode()
    assert "_auth_user_id" not in client.session

    other = type(client)()
    code = totp_code(device)
    device.throttle_reset()
    password_step(other, reviewer)
    assert other.post(CODE, {"otp_token": code}).status_code == 302
    replay = type(client)()
    password_step(replay, reviewer)
    assert "That code is wrong" in replay.post(CODE, {"otp_token": code}).content.decode()  # a code works once


def test_it_forgets_a_half_sign_in_after_five_minutes(client, reviewer, device, monkeypatch):
    import time

    password_step(client, reviewer)
    later = time.time() + pending.VALID_SECONDS + 1
    monkeypatch.setattr(pending.time, "time", lambda: later)
    response = client.post(CODE, {"otp_token": totp_code(device)})
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert "_auth_user_id" not in client.session


def test_it_asks_a_session_signed_in_by_the_password_alone_for_its_code(client, reviewer, device):
    # A session made another way (an old one, the test client) owes its code on every page.
    assert client.login(username=reviewer.username, password=PASSWORD)
    response = client.get("/patients/?q=x")
    assert response.status_code == 302 and response["Location"] == f"{CODE}?next=%2Fpatients%2F%3Fq%3Dx"
    done = client.post(CODE, {"otp_token": totp_code(device), "next": "/patients/?q=x"})
    assert done.status_code == 302 and done["Location"] == "/patients/?q=x"
    assert client.get("/patients/").status_code == 200


def test_it_ignores_an_offsite_next_after_the_code(client, reviewer, device):
    assert client.login(username=reviewer.username, password=PASSWORD)
    done = client.post(CODE, {"otp_token": totp_code(device), "next": "https://evil.example/"})
    assert done["Location"] == reverse("dashboard")


def test_it_sends_the_admins_own_login_to_the_two_step_sign_in(client, reviewer, device):
    response = client.get("/admin/login/", {"next": "/admin/diagnosis/prediction/"})
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=%2Fadmin%2Fdiagnosis%2Fprediction%2F"
    # Its form posted directly signs nobody in.
    posted = client.post("/admin/login/", {"username": reviewer.username, "password": PASSWORD})
    assert posted.status_code == 302 and "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index"))["Location"].startswith(reverse("admin:login"))


def test_it_opens_the_admin_after_both_steps(client, reviewer, device):
    password_step(client, reviewer, next="/admin/")
    assert client.post(CODE, {"otp_token": totp_code(device)})["Location"] == "/admin/"
    assert client.get(reverse("admin:index")).status_code == 200


def test_it_forgets_a_half_sign_in_whose_password_changed_since(client, reviewer, device):
    password_step(client, reviewer)
    reviewer.set_password("a-new-password-after-a-compromise")
    reviewer.save()
    response = client.post(CODE, {"otp_token": totp_code(device)})
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert "_auth_user_id" not in client.session


def test_a_right_code_just_after_a_wrong_one_says_when_to_try_again(client, reviewer, device):
    # django-otp checks no code for a moment after a wrong one: the person is told, not told "wrong" again.
    password_step(client, reviewer)
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    first = client.post(CODE, {"otp_token": wrong}).content.decode()
    assert "try again in" in first  # the pause after a wrong code is said at once
    second = client.post(CODE, {"otp_token": totp_code(device)})
    body = second.content.decode()
    assert second.status_code == 200 and re.search(r"try again in [12] s", body)
    device.throttle_reset()
    assert client.post(CODE, {"otp_token": totp_code(device)}).status_code == 302
