"""A signed-in session reaches nothing until its second factor is done.

After the password, a session whose user has a second factor but has not given a code in it, or
must have one (accounts.second_factor.must_use_second_factor) but has none, reaches only the code
step or the enrolment page — and signing out, and the static files. Every other page, the admin's
included, redirects there; an API call made with such a session answers 403 JSON with a
machine-readable ``code``. One rule for every path, rather than a decorator per view, so that a new
page or an admin view cannot be left open to a password alone.

API calls with a token carry no session and pass: POST /api/auth/token/ asks for the code itself,
so every token was issued after one. Needs django-otp's OTPMiddleware before it (``is_verified``).
"""

import functools
from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse

from core.middleware import DATABASE_ERRORS, database_unavailable, wants_json

from .second_factor import has_second_factor, must_use_second_factor

# Reachable with the second factor still owed: the steps themselves, the way out, and the idle
# sign-out's timer, which every page polls (accounts/idle.py).
OPEN_URL_NAMES = ("login", "logout", "second_factor_code", "second_factor_enrol", "api:token", "favicon",
                  "session_activity")

CODE_OWED = {
    "step": "second_factor_code",
    "code": "otp_required",
    "detail": "This session has not given its one-time code yet: enter it at /accounts/code/ first.",
}
ENROLMENT_OWED = {
    "step": "second_factor_enrol",
    "code": "otp_enrolment_required",
    "detail": "This account must use a second factor: enrol one in the web app first (/account/second-factor/enrol/).",
}


def owed_step(user):
    """CODE_OWED, ENROLMENT_OWED, or None when this signed-in user may go anywhere."""
    if user.is_verified():
        return None
    if has_second_factor(user):
        return CODE_OWED
    if must_use_second_factor(user):
        return ENROLMENT_OWED
    return None


def is_open(path):
    return path.startswith("/" + settings.STATIC_URL.lstrip("/")) or path in open_paths()


@functools.cache
def open_paths():
    """Reversed once per process: the middleware asks on every request."""
    return frozenset(reverse(name) for name in OPEN_URL_NAMES)


class RequireSecondFactor:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            owed = owed_step(request.user) if request.user.is_authenticated and not is_open(request.path) else None
        except DATABASE_ERRORS as exc:  # reading the session, the user or their devices
            return database_unavailable(request, exc)
        if owed:
            return held_back(request, owed)
        return self.get_response(request)


def held_back(request, owed):
    if wants_json(request):
        return JsonResponse({"detail": owed["detail"], "code": owed["code"]}, status=403)
    # Back here after the step; a form's POST cannot be replayed by a redirect, so that goes home.
    next_url = request.get_full_path() if request.method == "GET" else resolve_url(settings.LOGIN_REDIRECT_URL)
    return redirect(f"{reverse(owed['step'])}?{urlencode({'next': next_url})}")
