"""The signed-in session's own endpoints: how long until the idle sign-out, and signing out everywhere.

``/account/session/`` answers JSON for static/js/idle-timeout.js (accounts/idle.py has the contract);
``/account/sign-out-everywhere/`` is the account page's button (accounts/sessions.py says what it ends).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from .idle import record_activity, seconds_left, unauthorized
from .sessions import sign_out_everywhere


@require_http_methods(["GET", "POST"])
def session_activity(request):
    """GET: seconds left before the idle sign-out (send ``X-Background-Request: 1``, or the GET itself
    is activity); POST ("Stay signed in", with CSRF): activity. 401 when the session is not signed in."""
    if not request.user.is_authenticated:
        return unauthorized(request, "Not signed in.")
    if request.method == "POST":
        record_activity(request.session, force=True)
    return JsonResponse({"remaining": seconds_left(request.session),
                         "timeout": settings.PNEUMOWEB_IDLE_TIMEOUT_SECONDS,
                         "warning": settings.PNEUMOWEB_IDLE_WARNING_SECONDS})


@login_required
@require_POST
def sign_out_everywhere_view(request):
    """End every session of the user, on every browser and device, and revoke all their API tokens."""
    sign_out_everywhere(request)
    messages.success(request, "You were signed out everywhere: on every browser and device, and all your "
                              "API tokens were revoked.")
    return redirect(settings.LOGIN_URL)
