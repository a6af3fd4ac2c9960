"""/account/second-factor/enrol/: QR code and secret, confirmation with a code, ten recovery codes shown once."""

import re
from base64 import b32decode
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from ..base import enrol_totp
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("second_factor_enrol")


def code_from(secret, steps_ahead=0):
    """What an authenticator app shows for this secret (the test computes it from the page, as a phone would)."""
    return f"{totp(b32decode(secret + '=' * (-len(secret) % 8)), drift=steps_ahead):06d}"


def secret_on(html):
    return re.search(r'data-testid="otp-secret">([A-Z2-7]+)<', html)[1]


@pytest.fixture
def reviewer_signed_in(client, reviewer):
    assert client.login(username=reviewer.username, password=PASSWORD)
    return client


def test_it_shows_a_qr_code_and_the_secret_of_an_otpauth_uri_with_issuer_and_username(reviewer_signed_in, reviewer):
    response = reviewer_signed_in.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    secret = secret_on(html)
    uri = urlparse(response.context["uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert unquote(uri.path) == f"/PneumoWeb:{reviewer.username}"
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert query["issuer"] == "PneumoWeb" and query["secret"].rstrip("=") == secret
    assert query["digits"] == "6" and query["period"] == "30" and query["algorithm"] == "SHA1"
    qr = re.search(r'data-testid="otp-qr"><svg[^>]*>.*?</svg>', html, re.S)
    assert qr and "<path" in qr[0] and " style=" not in html and "<script>" not in html  # the CSP holds
    # The same secret on every visit until it is confirmed, and it is not a second factor yet.
    assert secret_on(reviewer_signed_in.get(URL).content.decode()) == secret
    assert not TOTPDevice.objects.filter(user=reviewer, confirmed=True).exists()


def test_it_refuses_a_wrong_code_and_confirms_with_the_right_one(reviewer_signed_in, reviewer):
    secret = secret_on(reviewer_signed_in.get(URL).content.decode())
    wrong = f"{(int(code_from(secret)) + 1) % 1_000_000:06d}"
    response = reviewer_signed_in.post(URL, {"otp_token": wrong})
    assert response.status_code == 200 and "That code is wrong" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=reviewer, confirmed=True).exists()
    # A wrong code started django-otp's throttle (1 s); a confirmation after it goes through.
    TOTPDevice.objects.filter(user=reviewer).update(throttling_failure_count=0, throttling_failure_timestamp=None)

    response = reviewer_signed_in.post(URL, {"otp_token": code_from(secret), "next": "/review/"})
    assert response.status_code == 200
    device = TOTPDevice.objects.get(user=reviewer, confirmed=True)
    assert device.name == "authenticator app"
    # The session is verified now: the review queue opens.
    assert reviewer_signed_in.get(reverse("review_queue")).status_code == 200
    assert 'href="/review/"' in response.content.decode()


def test_it_shows_ten_recovery_codes_once(reviewer_signed_in, reviewer):
    secret = secret_on(reviewer_signed_in.get(URL).content.decode())
    html = reviewer_signed_in.post(URL, {"otp_token": code_from(secret)}).content.decode()
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", re.search(r'data-testid="recovery-codes">(.*?)</ol>', html, re.S)[1])
    assert len(codes) == len(set(codes)) == 10
    assert sorted(StaticToken.objects.filter(device__user=reviewer).values_list("token", flat=True)) == sorted(codes)
    # Shown once: the enrolment page now sends to the account page, which shows how many are left, not them.
    again = reviewer_signed_in.get(URL, follow=True)
    page = again.content.decode()
    assert again.redirect_chain[-1][0] == reverse("second_factor")
    assert not any(code in page for code in codes) and 'data-testid="recovery-codes-left">10<' in page


def test_it_asks_a_user_with_a_second_factor_for_a_code_before_enrolling_again(client, reviewer):
    enrol_totp(reviewer)
    assert client.login(username=reviewer.username, password=PASSWORD)  # the password alone
    response = client.get(URL, follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("second_factor_code"))
    assert TOTPDevice.objects.filter(user=reviewer).count() == 1


def test_it_sends_an_anonymous_visitor_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
