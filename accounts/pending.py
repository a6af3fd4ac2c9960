"""A sign-in half done: the password was right, the one-time code is still owed.

The session remembers who (and which backend checked the password, and where to go after) for a few
minutes, and nothing else: the user is not signed in — ``request.user`` stays anonymous — until the
code step calls ``login()``. The session key changes when the password is accepted, so a session id
planted before (fixation) does not carry a half sign-in.
"""

import time

from django.contrib.auth import get_user_model
from django.utils.crypto import constant_time_compare

KEY = "second_factor_pending"
VALID_SECONDS = 300


def remember(request, user, next_url):
    request.session.cycle_key()
    request.session[KEY] = {"user": user.pk, "backend": user.backend, "next": next_url, "at": time.time(),
                            "password": user.get_session_auth_hash()}


def pending(request):
    """(user, backend, next URL) of the half sign-in in this session, or None (none, expired, or inactive)."""
    data = request.session.get(KEY)
    if not data or time.time() - data["at"] > VALID_SECONDS:
        return None
    user = get_user_model().objects.filter(pk=data["user"], is_active=True).first()
    if user is None or not constant_time_compare(data.get("password", ""), user.get_session_auth_hash()):
        return None  # gone, or the password changed since it was given: start again
    return user, data["backend"], data["next"]


def forget(request):
    request.session.pop(KEY, None)
