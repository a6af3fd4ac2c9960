"""A PACS sender's API tokens: their own lifetime, issued, rotated and revoked by an administrator.

A sending system (role pacs, accounts/roles.py) holds a token in its configuration for months; the
people's token lifetime (PNEUMOWEB_TOKEN_TTL_HOURS, a week) would have it die unseen and its pushes fail.
So a sender's tokens last ``PNEUMOWEB_SENDER_TOKEN_TTL_DAYS`` (default 365), and monitoring warns
``PNEUMOWEB_SENDER_TOKEN_WARN_DAYS`` (14) before the newest one ends (:func:`ending_soon`).

- :func:`issue`: a new token (the old ones stay valid); ``create_user --role pacs`` and
  ``POST /api/auth/token/`` for a sender use it.
- :func:`rotate`: a new token, and the older ones end after ``ROTATION_GRACE`` (a day), so the PACS can be
  given the new one before the old stops working.
- :func:`revoke`: every token of the sender ends now.
``manage.py sender_token NAME [--rotate | --revoke]`` does each and shows the expiries.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import knox_settings

from .roles import GROUP, PACS_SENDER, is_pacs_sender

ROTATION_GRACE = timedelta(days=1)


def lifetime():
    return timedelta(days=settings.PNEUMOWEB_SENDER_TOKEN_TTL_DAYS)


def issue(user):
    """(knox AuthToken row, the token's text, shown once) with a sender's lifetime."""
    return AuthToken.objects.create(user=user, expiry=lifetime())


def rotate(user, now=None):
    """A new token; the sender's older tokens end after ROTATION_GRACE (or sooner, if they would anyway)."""
    now = now or timezone.now()
    row, token = issue(user)
    ends = now + ROTATION_GRACE
    AuthToken.objects.filter(user=user, expiry__gt=ends).exclude(pk=row.pk).update(expiry=ends)
    return row, token


def revoke(user):
    """End every token of the sender now; returns how many there were."""
    return AuthToken.objects.filter(user=user).delete()[0]


def live_tokens(user, now=None):
    now = now or timezone.now()
    return AuthToken.objects.filter(user=user).filter(expiry__gt=now).order_by("-expiry")


@dataclass(frozen=True)
class Ending:
    username: str
    expiry: object  # datetime of the newest live token, None when it has none

    @property
    def sentence(self):
        if self.expiry is None:
            return (f"PACS sender {self.username!r} has no valid API token: its STOW-RS pushes are refused. "
                    f"Issue one: manage.py sender_token {self.username} --rotate")
        return (f"The API token of PACS sender {self.username!r} ends on {self.expiry:%Y-%m-%d %H:%M} UTC: rotate "
                f"it (manage.py sender_token {self.username} --rotate) and give the new one to the PACS.")


def ending_soon(now=None):
    """The active PACS senders whose newest token ends within PNEUMOWEB_SENDER_TOKEN_WARN_DAYS, or who have none."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.PNEUMOWEB_SENDER_TOKEN_WARN_DAYS)
    found = []
    for user in get_user_model().objects.filter(is_active=True, groups__name=GROUP[PACS_SENDER]).order_by("username"):
        newest = live_tokens(user, now).first()
        if newest is None or newest.expiry <= horizon:
            found.append(Ending(user.get_username(), newest.expiry if newest else None))
    return found


def token_lifetime_for(user):
    """The lifetime of a token issued to ``user`` by the token endpoint: a sender's, or the people's."""
    return lifetime() if is_pacs_sender(user) else knox_settings.TOKEN_TTL
