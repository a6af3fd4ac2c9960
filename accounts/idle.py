"""Automatic sign-out of a browser session after PNEUMOWEB_IDLE_TIMEOUT_SECONDS without activity.

The contract:

- Only requests that a session signs in are concerned. A request with an API token (``Authorization:
  Token …`` under /api/, where the token and nothing else authenticates it) is neither activity nor
  refused: tokens have their own expiry.
- The time of the session's last activity is kept in the session itself, on the server. Every request
  is activity except one marked ``X-Background-Request: 1`` — what the site's own scripts send when
  they poll (static/js/prediction-poll.js, worklist-live.js, idle-timeout.js) — so a page left open
  on a running job still signs out. Signing in is activity.
- A request that comes later than the idle period ends the session server-side (``logout``: its row
  is deleted) and, background or not, is answered 401 ``{"detail": …}`` when it wants JSON (under
  /api/, ``Accept: application/json``, background, XHR), otherwise by a redirect to the login page
  with ``?next=`` and a message that says why. On the login and logout pages the session is ended and
  the request goes on: the login form is what the user needs there.
- ``GET /account/session/`` (sent as background) says how many seconds remain, ``POST`` (with CSRF)
  is activity: the page's warning (static/js/idle-timeout.js) asks before it warns or signs out, so
  activity in another tab counts, and its "Stay signed in" button posts.

Activity is written to the session at most once every ACTIVITY_RESOLUTION seconds: a page's burst of
image requests would otherwise write the session's row once each. A sign-out can come that much early.
"""

import logging
import math
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.shortcuts import resolve_url
from django.urls import reverse
from knox.settings import knox_settings

from core.middleware import DATABASE_ERRORS, database_unavailable, wants_json

from .sessions import remember_session, signed_in_user_id, signed_out

log = logging.getLogger(__name__)

LAST_ACTIVITY = "pneumoweb_last_activity"  # seconds since the epoch, in the session
BACKGROUND_HEADER = "X-Background-Request"
ACTIVITY_RESOLUTION = 5


def idle_timeout():
    return settings.PNEUMOWEB_IDLE_TIMEOUT_SECONDS


def is_background(request):
    return request.headers.get(BACKGROUND_HEADER) == "1"


def authenticated_by_token(request):
    """An API request with a token: DRF authenticates it by the token alone (knox comes first, and a
    wrong token is a 401, never a fall back to the session). Pages ignore the header: not these."""
    scheme = request.headers.get("Authorization", "").split(" ", 1)[0]
    return request.path.startswith("/api/") and scheme.lower() == knox_settings.AUTH_HEADER_PREFIX.lower()


def answers_json(request):
    return (wants_json(request) or is_background(request)
            or request.headers.get("X-Requested-With") == "XMLHttpRequest")


def record_activity(session, now=None, force=False):
    now = time.time() if now is None else now
    last = session.get(LAST_ACTIVITY)
    if force or last is None or now - last >= ACTIVITY_RESOLUTION:
        session[LAST_ACTIVITY] = now


def seconds_left(session, now=None):
    """Whole seconds before the session is signed out for inactivity (rounded up: 0 only once it is)."""
    now = time.time() if now is None else now
    return max(0, math.ceil(idle_timeout() - (now - session.get(LAST_ACTIVITY, now))))


def in_words(seconds):
    minutes, rest = divmod(seconds, 60)
    if rest:
        return f"{seconds} seconds"
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def activity_at_sign_in(sender, request, user, **kwargs):
    """``user_logged_in``: the idle period starts at sign-in."""
    record_activity(request.session, force=True)


def unauthorized(request, message):
    response = JsonResponse({"detail": message}, status=401)
    if request.path.startswith("/api/"):
        response["WWW-Authenticate"] = knox_settings.AUTH_HEADER_PREFIX  # as DRF's own 401s say
    return response


def sign_out_idle(request, idle_seconds):
    """End the session (server-side) and answer why; None on the login and logout pages, which go on."""
    message = f"You were signed out after {in_words(idle_timeout())} without activity."
    signed_out.send(sender=IdleSignOut, request=request, user=request.user, reason="idle",
                    idle_seconds=round(idle_seconds))
    logout(request)
    # Kept in the messages cookie, which outlives the session: the login page shows it.
    messages.info(request, message)
    if request.path in (resolve_url(settings.LOGIN_URL), reverse("logout")):
        return None
    if answers_json(request):
        return unauthorized(request, f"{message} Sign in again.")
    return redirect_to_login(request.get_full_path())


class IdleSignOut:
    """Keeps the time of a signed-in session's last activity and ends the session after the idle period."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if authenticated_by_token(request):
            return self.get_response(request)
        try:
            refused = self.refused(request)
        except DATABASE_ERRORS as error:  # reading the session or the user: a 503 as for views
            return database_unavailable(request, error)
        if refused is not None:
            return refused
        response = self.get_response(request)
        # After the view: a sign-in, or a new key after a password change, is recorded under its key.
        try:
            remember_session(request.session)
        except DATABASE_ERRORS:
            # The answer is already made; the next request records the session again.
            log.warning("Could not record the session of %s", request.path, exc_info=True)
        return response

    def refused(self, request):
        session = request.session
        if signed_in_user_id(session) is None or not request.user.is_authenticated:
            return None
        now, last = time.time(), session.get(LAST_ACTIVITY)
        if last is None:
            # Signed in before idle sign-out was deployed (every sign-in since records its time):
            # its activity is unknown, so it is treated as idle rather than as fresh.
            return sign_out_idle(request, idle_timeout())
        if now - last >= idle_timeout():
            return sign_out_idle(request, now - last)
        if not is_background(request):
            record_activity(session, now)
        return None
