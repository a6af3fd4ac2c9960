"""django-axes for the second step: a wrong one-time code is a failed sign-in of that username from that address.

The same records, limit and cool-off as wrong passwords (AXES_*): guessing codes locks out as
guessing passwords does, and a lockout earned at either step stops both — the password step's
backend refuses the pair, and the code step and the token endpoint ask before checking a code.
axes listens to Django's ``user_login_failed``; sending it with the username as the credentials is
what ``authenticate`` does for a wrong password. A full sign-in (password and code) resets the count
(AXES_RESET_ON_SUCCESS); the password alone does not, for a user who still owes a code.
"""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import JsonResponse
from django.shortcuts import render

from core.middleware import wants_json


def is_locked_out(request, username):
    """Whether ``username`` from this request's address may not try again yet (``request``: Django's)."""
    if not settings.AXES_ENABLED:
        return False
    return not AxesProxyHandler.is_allowed(request, {"username": username})


def record_wrong_code(request, username):
    """Count a wrong code; True when it was the one that locked the pair out.

    axes marks ``request`` locked out, and its middleware then answers with the lockout response
    (``lockout_response`` below: the 429 page, or JSON for the API).
    """
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    return bool(getattr(request, "axes_locked_out", False))


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' answer while a username + address is locked out: JSON for the API, a page otherwise."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60) if settings.AXES_COOLOFF_TIME else None
    wait = f"{minutes} minutes" if minutes else "a while"
    if wants_json(request):
        return JsonResponse({"detail": f"Too many failed sign-ins for this account from this address: wait {wait}, "
                                       "or ask an administrator to unlock it."}, status=429)
    return render(request, "registration/locked_out.html", {"wait": wait}, status=429)
