"""Every session a user is signed in with, and ending them all: "sign out everywhere", and after a password change.

Why a list of (user, session key) rows (``accounts.models.SignedInSession``): a session engine can load or
delete a session by its key, but none can find a user's sessions — the database engine keeps the user
id inside the encoded data, the cache engines nowhere searchable. So each session is recorded when a
user signs in with it and again whenever Django gives it a new key (a password change does), and
forgotten at sign-out; ending them all deletes each one from whichever engine keeps it (database,
cache, cached_db): server-side, so the cookie every browser still holds opens nothing any more.
The other usual design, a per-user generation number copied into each session and compared on every
request, costs a query per request and leaves the sessions in place until each is next used; this
list costs a write only when a session's key changes. A signed-cookie engine keeps sessions in the
browser, where nothing can end them: the system check refuses it (accounts.E001).

A password change — any save of a new ``User.password``: the password-change page, the admin's
password form, ``manage.py changepassword``, ``manage.py create_user`` resetting one — ends every
session of the user and deletes all their API tokens (the pre_save/post_save receivers below, one
place for every path). The changer's own session goes on: Django's password-change views call
``update_session_auth_hash``, which moves it to a new key, recorded again at the end of the request.
Django re-hashing an unchanged password with a newer hasher at sign-in is not a change.
"""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model, logout
from django.contrib.auth.hashers import get_hasher, identify_hasher
from django.core import checks
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from knox.models import AuthToken

from .models import SignedInSession

# Sent just before the server itself signs a user out — reason "idle" (accounts/idle.py) or "everywhere" —
# with ``request``, ``user``, ``reason`` and details; the audit trail records it (audit/apps.py).
signed_out = Signal()

# Which key the session was last recorded under: a different key means Django gave it a new one.
RECORDED_KEY = "pneumoweb_recorded_key"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


def session_store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def is_live(session_key):
    """Whether the engine still has this session, unexpired (a signed-in session always holds data)."""
    return bool(session_store()(session_key=session_key).load())


def signed_in_user_id(session):
    """The id of the user ``session`` is signed in as, or None. Read from the session, not from
    ``request.user``: an API request's user comes from its token, whatever cookie it also carries."""
    value = session.get(SESSION_KEY)
    return None if value is None else get_user_model()._meta.pk.to_python(value)


def remember_session(session):
    """Record ``session`` as one of its user's, if it is signed in and not yet recorded under its key."""
    user_id = signed_in_user_id(session)
    if user_id is None:
        return
    if session.session_key is None:
        session.save()  # a session flushed at sign-in (another user's before) has no key until saved
    key, previous = session.session_key, session.get(RECORDED_KEY)
    if previous == key:
        return
    if not get_user_model().objects.filter(pk=user_id).exists():
        # The user was deleted: Django already treats the session as anonymous; end it here too.
        session.flush()
        return
    if previous:
        SignedInSession.objects.filter(session_key=previous).delete()
    try:
        with transaction.atomic():
            SignedInSession.objects.update_or_create(session_key=key, defaults={"user_id": user_id})
    except IntegrityError:  # the user was deleted between the two statements
        session.flush()
        return
    session[RECORDED_KEY] = key


def remember_at_sign_in(sender, request, user, **kwargs):
    """``user_logged_in``: record the new session, and forget the user's sessions that have expired since."""
    for row in SignedInSession.objects.filter(user=user):
        if not is_live(row.session_key):
            row.delete()
    remember_session(request.session)


def forget_at_sign_out(sender, request, user, **kwargs):
    """``user_logged_out``: the session is about to be deleted; so is its row."""
    if request is not None and request.session.session_key:
        SignedInSession.objects.filter(session_key=request.session.session_key).delete()


def end_sessions(user):
    """Delete every recorded session of ``user`` from the session engine; returns how many were still live."""
    ended = 0
    rows = SignedInSession.objects.filter(user=user)
    for key in rows.values_list("session_key", flat=True):
        ended += is_live(key)
        session_store()().delete(key)
    rows.delete()
    return ended


def end_every_session_after_restore(manifest=None, options=None):
    """A restore brings back the sessions and tokens of its day, some since ended or revoked (a
    password changed after a compromise): none is trusted; everyone signs in again."""
    for key in SignedInSession.objects.values_list("session_key", flat=True):
        session_store()().delete(key)
    SignedInSession.objects.all().delete()
    if settings.SESSION_ENGINE in ("django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"):
        from django.contrib.sessions.models import Session

        Session.objects.all().delete()
    tokens, _ = AuthToken.objects.all().delete()
    return f"Ended every session and API token the backup held ({tokens} token(s)): everyone signs in again."


def revoke_tokens(user):
    """Delete every API token of ``user``; returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def sign_out_everywhere(request):
    """End every session of the request's user (this one too) and revoke all their API tokens."""
    user = request.user
    sessions, tokens = end_sessions(user), revoke_tokens(user)
    signed_out.send(sender=sign_out_everywhere, request=request, user=user, reason="everywhere",
                    sessions=sessions, tokens=tokens)
    logout(request)  # this request's session is gone already; logout forgets it here too
    return sessions, tokens


# --- a password change ends everything -----------------------------------------------------------


def rehashed_at_sign_in(stored):
    """Whether Django re-hashes ``stored`` at the next correct sign-in (``check_password``'s setter)."""
    try:
        hasher = identify_hasher(stored)
    except ValueError:
        return False
    preferred = get_hasher("default")
    return hasher.algorithm != preferred.algorithm or preferred.must_update(stored)


def saves_a_new_password(model, user, update_fields):
    if user.pk is None or (update_fields is not None and "password" not in update_fields):
        return False
    stored = model._default_manager.filter(pk=user.pk).values_list("password", flat=True).first()
    if stored is None or stored == user.password:
        return False
    # set_password() since the last save leaves the raw password in _password (Django reads it to tell
    # the password validators); the re-hash at sign-in clears it first. Any other new hash is a change
    # unless the stored one was due for that re-hash.
    return getattr(user, "_password", None) is not None or not rehashed_at_sign_in(stored)


def note_password_change(sender, instance, raw=False, update_fields=None, **kwargs):
    """pre_save of the user model: whether this save stores a new password (compared with the stored hash)."""
    instance._pneumoweb_new_password = not raw and saves_a_new_password(sender, instance, update_fields)


def end_everything_after_password_change(sender, instance, raw=False, **kwargs):
    """post_save of the user model: a new password ends every session and API token of the user."""
    if getattr(instance, "_pneumoweb_new_password", False):
        instance._pneumoweb_new_password = False
        end_sessions(instance)
        revoke_tokens(instance)


def check_session_engine(app_configs, **kwargs):
    """accounts.E001: sessions kept in signed cookies cannot be ended server-side (sign-out everywhere, idle)."""
    if settings.SESSION_ENGINE != SIGNED_COOKIES:
        return []
    return [checks.Error("SESSION_ENGINE keeps sessions in signed cookies, which the server cannot end: "
                         "idle sign-out, sign-out everywhere and password changes need a server-side engine.",
                         hint="Use django.contrib.sessions.backends.db (the default), cache or cached_db.",
                         id="accounts.E001")]
