"""The sign-in, second-factor and session pages answer bad input with a page or a 4xx, never a 500.

Every form field of each page gets the kinds of bad input the API fuzz gives the API: empty, huge,
NUL bytes, not-UTF-8 bytes, a list where one value goes, other methods; anonymous, half signed in,
and signed in.
"""

import pytest
from django.test import Client
from django.urls import reverse

from ..base import enrol_totp, verify_session
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = ["login", "second_factor_code", "second_factor", "second_factor_enrol", "admin_login",
         "session_activity", "sign_out_everywhere", "api_token", "password_change", "password_reset", "logout"]
FIELDS = ["username", "password", "otp_token", "code", "next", "action", "token", "old_password", "new_password1", "email"]
VALUES = ["", "x" * 100_000, "a\x00b", ["1", "2"], "../../etc/passwd", "http://evil.example/", "٣٤٥٦٧٨"]


def answers(client, name):
    url = reverse(name)
    statuses = [client.get(url).status_code, client.get(url, {"next": "http://evil.example/"}).status_code]
    for field in FIELDS:
        for value in VALUES:
            statuses.append(client.post(url, {field: value}).status_code)
    statuses.append(client.post(url, b"\xff\xfe\x00not utf-8", content_type="application/x-www-form-urlencoded")
                    .status_code)
    statuses += [client.put(url).status_code, client.delete(url).status_code, client.patch(url).status_code]
    return statuses


@pytest.mark.parametrize("name", PAGES)
def test_it_never_answers_500_to_an_anonymous_visitor(name):
    statuses = answers(Client(), name)
    assert all(status < 500 for status in statuses), statuses


@pytest.mark.parametrize("name", PAGES)
def test_it_never_answers_500_to_a_half_signed_in_reviewer(reviewer, name):
    enrol_totp(reviewer)
    client = Client()
    assert client.post(reverse("login"), {"username": reviewer.username, "password": PASSWORD}).status_code == 302
    statuses = answers(client, name)
    assert all(status < 500 for status in statuses), statuses


@pytest.mark.parametrize("name", PAGES)
def test_it_never_answers_500_to_a_signed_in_reviewer(reviewer, name):
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    verify_session(client, reviewer)
    statuses = answers(client, name)
    assert all(status < 500 for status in statuses), statuses
