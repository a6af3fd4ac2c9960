"""The second factor in a real browser, against a real stack that requires it (PNEUMOWEB_OTP_REQUIRED=true).

A reviewer signs in with the password, is held at enrolment, reads the secret off the page and
computes the code as an authenticator app would (django_otp.oath.totp), confirms, keeps the
recovery codes; signs out; signs in again with password and code and reaches the review queue.
Chromium, the stack and the skipping rules are those of test_browser.py.
"""

import re
from base64 import b32decode
from urllib.parse import unquote

import pytest
from django_otp.oath import totp

from ..stack import PASSWORD
from .test_browser import browser, browser_stack, page  # noqa: F401 - the same Chromium and pages as the other browser tests

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with browser_stack(tmp_path_factory.mktemp("browser-otp"), users=[("rita", "reviewer")],
                       extra_env={"PNEUMOWEB_OTP_REQUIRED": "true"}) as stack:
        yield stack


def app_code(secret, steps_ahead=0):
    """What an authenticator app shows for ``secret`` now (``steps_ahead``: a later 30 s step's; a code works once)."""
    return f"{totp(b32decode(secret + '=' * (-len(secret) % 8)), drift=steps_ahead):06d}"


def test_a_reviewer_enrols_then_signs_in_with_password_and_code(stack, page):  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    blocked = []
    page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None)

    # The password alone leads to enrolment, and nothing else opens.
    stack.log_in(page, "rita")
    page.wait_for_url(re.compile(r"/account/second-factor/enrol/"))
    page.goto(stack.url("/review/"))
    assert "/account/second-factor/enrol/" in page.url

    # Enrol: the QR code is drawn, the secret is shown as text; a code computed from it confirms.
    expect(page.locator("[data-testid=otp-qr] svg")).to_be_visible()
    secret = page.locator("[data-testid=otp-secret]").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    uri = unquote(page.locator("[data-testid=otp-uri]").get_attribute("href"))
    assert uri.startswith("otpauth://totp/PneumoWeb:rita?") and f"secret={secret}" in uri and "issuer=PneumoWeb" in uri
    page.fill("#id_otp_token", app_code(secret))
    page.click("[data-testid=otp-confirm]")
    codes = page.locator("[data-testid=recovery-codes] li")
    expect(codes).to_have_count(10)
    page.click("[data-testid=recovery-codes-done]")
    page.wait_for_url(re.compile(r"/review/$"))  # where the reviewer was going
    expect(page.locator("h1")).to_have_text("Review queue")

    # Sign out, then in again: password, then the next code from the app.
    page.click("form.logout button")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.goto(stack.url("/review/"))
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.click("[data-testid=login-submit]")
    page.wait_for_url(re.compile(r"/accounts/code/$"))
    expect(page.locator("[data-testid=second-factor-code]")).to_contain_text("Signing in as rita")
    page.fill("#id_otp_token", app_code(secret, steps_ahead=1))  # the enrolment's code cannot be used twice
    page.click("[data-testid=code-submit]")
    page.wait_for_url(re.compile(r"/review/$"))
    expect(page.locator("h1")).to_have_text("Review queue")
    expect(page.locator("[data-testid=nav-review]")).to_be_visible()
    assert blocked == []  # no page of the flow broke its Content-Security-Policy
