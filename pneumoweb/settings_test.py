"""Settings for the in-process test suite: the real settings, with a fast password hasher.

Integration tests start real processes with ``pneumoweb.settings`` itself.
"""

import os
import tempfile
from pathlib import Path

# A fixed key for in-process tests, so pytest needs no prepared var folder (processes that the
# integration tests start use a prepared one, as bin/run does).
os.environ.setdefault("DJANGO_SECRET_KEY", "pneumoweb-tests-only-not-a-secret-0123456789abcdefghijklmnop")

from .settings import *  # noqa: E402, F403 - this module is the settings plus the overrides below

# PBKDF2 with Django's iterations costs ~0.3 s per login on a small CPU; tests log in hundreds of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test client's login() calls authenticate() without a request, which django-axes refuses;
# the lockout tests switch it on for themselves.
AXES_ENABLED = False

# Seals made by in-process tests go to a scratch file, never to the machine's var folder.
PNEUMOWEB_AUDIT_SEAL_FILE = Path(tempfile.mkdtemp(prefix="pneumoweb-test-seals-")) / "audit-seals.jsonl"
PNEUMOWEB_ERASURE_LOG = PNEUMOWEB_AUDIT_SEAL_FILE.with_name("erasures.jsonl")
