"""The audit trail: who created, changed, viewed, downloaded, exported or reviewed what, when, from where.

Model changes are logged by django-auditlog (the apps that own the models register them in their
``AppConfig.ready``, so this app imports nothing from them); views, downloads, exports and stored
files that failed their integrity check are logged here explicitly, as auditlog ACCESS entries
whose ``additional_data`` says what was done.
Entries are append-only: the admin shows, filters and exports them and offers no edit or delete.
"""

from auditlog.middleware import AuditlogMiddleware
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.utils.functional import SimpleLazyObject


class AuditMiddleware(AuditlogMiddleware):
    """auditlog's middleware, with the actor read when an entry is written, not when the request starts.

    An API request is authenticated by DRF inside the view (a token), after the middleware ran;
    DRF sets the user on the Django request, so reading it late names the token's user too.
    """

    @staticmethod
    def _get_actor(request):
        def actor():
            user = getattr(request, "user", None)
            return user if isinstance(user, get_user_model()) and user.is_authenticated else None

        return SimpleLazyObject(actor)


def record_access(request, action, instance, **details):
    """An ACCESS entry for ``instance``: ``action`` is view, download or export; ``details`` say of what."""
    user = getattr(request, "user", None)
    actor = user if getattr(user, "is_authenticated", False) else None
    return LogEntry.objects.log_create(
        instance, force_log=True, action=LogEntry.Action.ACCESS,
        actor=actor, remote_addr=AuditlogMiddleware._get_remote_addr(request),
        additional_data={"action": action, "path": request.path, **details},
    )


def record_integrity_failure(instance, **details):
    """An ACCESS entry: a stored file of ``instance`` failed its integrity check; ``details`` say which and how.

    Written where the check failed — a page, the API, the worker, a PACS export — so it takes no
    request: inside one, the middleware's context fills in the actor and the address.
    """
    return LogEntry.objects.log_create(
        instance, force_log=True, action=LogEntry.Action.ACCESS,
        additional_data={"action": "integrity failure", **details},
    )


def record_sign_out(sender, request, user, reason, signal=None, **details):
    """accounts.sessions.signed_out: an ACCESS entry on the user signed out by the server — "sign out after
    inactivity" or "sign out everywhere" (with how many sessions and API tokens that ended)."""
    what = {"idle": "after inactivity", "everywhere": "everywhere"}.get(reason, reason)
    record_access(request, "sign out", user, what=what, **details)


# --- sign-ins and sign-outs, under their own names (Django's auth signals, connected in apps.py) -----------


def record_signed_in(sender, request, user, **kwargs):
    """``user_logged_in``: "signed in", with the address (pages, the admin and the API's token sign-in)."""
    if request is not None:
        record_access(request, "signed in", user)


def record_signed_out(sender, request, user, **kwargs):
    """``user_logged_out``: "signed out" (the server's own sign-outs are recorded by ``record_sign_out``)."""
    if request is not None and user is not None:
        record_access(request, "signed out", user)


def record_sign_in_failed(sender, credentials, request=None, **kwargs):
    """``user_login_failed``: "sign-in failed" on the account named, with the address. A wrong password, an
    inactive account and a wrong one-time code (accounts/lockout.py sends it) count. A name that is no
    account is recorded on no object and is not written down: it may be a password typed in the wrong field."""
    username = (credentials or {}).get("username") or ""
    user = get_user_model().objects.filter(username=username).first() if username else None
    address = AuditlogMiddleware._get_remote_addr(request) if request is not None else None
    data = {"action": "sign-in failed", "path": getattr(request, "path", "")}
    if user is not None:
        return LogEntry.objects.log_create(user, force_log=True, action=LogEntry.Action.ACCESS, actor=None,
                                           remote_addr=address, additional_data=data)
    return LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(get_user_model()), object_pk="", object_repr="(no such account)",
        action=LogEntry.Action.ACCESS, remote_addr=address, additional_data={**data, "what": "unknown account"})
