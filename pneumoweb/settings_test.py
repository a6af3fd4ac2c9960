"""Settings for the in-process test suite: the real settings, with a fast password hasher.

Integration tests start real processes with ``pneumoweb.settings`` itself.
"""

from .settings import *  # noqa: F403

# PBKDF2 with Django's iterations costs ~0.3 s per login on a small CPU; tests log in hundreds of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test client's login() calls authenticate() without a request, which django-axes refuses;
# the lockout tests switch it on for themselves.
AXES_ENABLED = False
