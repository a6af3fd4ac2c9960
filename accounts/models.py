"""Which sessions belong to which user: the list that "sign out everywhere" ends (accounts/sessions.py says why)."""

from django.conf import settings
from django.db import models


class SignedInSession(models.Model):
    """One session a user is signed in with, by the key of its session (the session's data stays in its engine)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, unique=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "core_signedinsession"  # made by core's migrations before the move to accounts

    def __str__(self):
        return f"session {self.session_key[:8]}… of user {self.user_id}"
