"""The idle sign-out in a real browser (Playwright, Debian's Chromium) against a real stack with short times.

The stack signs out after TIMEOUT seconds without activity and warns WARNING seconds before, so
these tests wait in real time (about 15 s each). The page they leave idle is a result page
whose job stays queued (the worker is paused): it polls the API every second all along, which
must not keep the session. The browser and its pages are test_browser.py's fixtures.
"""

import re
import time
import uuid
from urllib.parse import parse_qs, urlparse

import pytest

from ..stack import running_stack
from . import test_browser

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# test_browser.py's Chromium and its pages (skipped without /usr/bin/chromium, failed under CI=true).
browser, page = test_browser.browser, test_browser.page

TIMEOUT, WARNING = 12, 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    short = {"PNEUMOWEB_IDLE_TIMEOUT_SECONDS": str(TIMEOUT), "PNEUMOWEB_IDLE_WARNING_SECONDS": str(WARNING)}
    # Two web processes, as test_browser.browser_stack says why.
    with running_stack(tmp_path_factory.mktemp("browser-idle"), users=[("alice", "clinician")], collectstatic=True,
                       web_workers=2,
                       extra_env=short) as stack:
        yield stack


def queued_result_page(stack):
    """The path of a result page whose job stays queued while the worker is paused: it keeps polling."""
    response = stack.submit_xray(stack.api_session("alice"), test_browser.FIXTURE_XRAY, age="4",
                                 patient_mrn=f"MRN-I-{uuid.uuid4().hex[:6]}", patient_name="Idle Page")
    assert response.status_code == 202, response.text
    return urlparse(response.json()["url"]).path.replace("/api/", "/", 1)


def background_flags_of_polls(page):
    """The X-Background-Request header of every poll the page makes from now on (None when missing)."""
    flags = []
    page.on("request", lambda request: flags.append(request.headers.get("x-background-request"))
            if "/api/predictions/" in request.url else None)
    return flags


def session_cookie(page):
    [cookie] = [c["value"] for c in page.context.cookies() if c["name"] == "sessionid"]
    return cookie


def seconds_left(page, stack):
    """What the page's warning script asks (as background, so asking is not activity)."""
    response = page.request.get(stack.url("/account/session/"),
                                headers={"X-Background-Request": "1", "Accept": "application/json"})
    return response.status, response.json()


def test_a_polling_page_warns_and_stay_signed_in_keeps_the_session(stack, page):
    from playwright.sync_api import expect

    stack.log_in(page, "alice")
    with stack.paused_worker():
        path = queued_result_page(stack)
        polls = background_flags_of_polls(page)
        page.goto(stack.url(path))
        warning = page.get_by_role("alertdialog")
        expect(warning).to_be_hidden()
        expect(warning).to_be_visible(timeout=(TIMEOUT - WARNING + 8) * 1000)
        shown = time.monotonic()
        expect(page.locator("#idle-warning-text")).to_have_text(
            re.compile(r"^You will be signed out in 0:(0\d|10) because of inactivity\.$"))
        # The page polled all along, each poll marked as background: none of them held the warning off.
        assert len(polls) >= 3 and set(polls) == {"1"}, polls
        stay = page.get_by_role("button", name="Stay signed in")
        expect(stay).to_be_focused()
        stay.click()
        expect(warning).to_be_hidden()
        status, answer = seconds_left(page, stack)
        assert status == 200 and answer["remaining"] > TIMEOUT - 3, answer
        # Past the moment the session would have ended without the click: still signed in, still here.
        time.sleep(max(0.0, WARNING + 2 - (time.monotonic() - shown)))
        assert urlparse(page.url).path == path
        status, answer = seconds_left(page, stack)
        assert status == 200 and answer["remaining"] > 0, answer


def test_an_idle_polling_page_lands_on_the_login_page_and_its_session_is_ended(stack, page):
    from playwright.sync_api import expect

    stack.log_in(page, "alice")
    with stack.paused_worker():
        path = queued_result_page(stack)
        page.goto(stack.url(path))
        cookie = session_cookie(page)
        page.wait_for_url(re.compile(r"/accounts/login/\?next="), timeout=(TIMEOUT + 15) * 1000)
    assert parse_qs(urlparse(page.url).query)["next"] == [path]
    expect(page.locator(".messages")).to_contain_text(f"You were signed out after {TIMEOUT} seconds without activity.")
    # The old session opens nothing any more, replayed from anywhere: the server ended it.
    assert stack.query("SELECT COUNT(*) FROM django_session WHERE session_key = %s", (cookie,)) == [(0,)]
    with stack.http() as http:
        response = http.get(stack.url("/patients/"), cookies={"sessionid": cookie}, allow_redirects=False, timeout=30)
    assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]
