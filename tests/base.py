"""Helpers shared by test modules (imported explicitly, not through conftest)."""

import contextlib


def api_client_for(user):
    """An API client that sends a real (knox) token of ``user``."""
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    client = APIClient()
    _, token = AuthToken.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@contextlib.contextmanager
def throttle_rates(**rates):
    """Run the block with these DRF throttle rates (e.g. predict="2/min"), on an empty cache."""
    from django.core.cache import cache
    from rest_framework.settings import api_settings

    from core.throttling import AtomicScopedRateThrottle

    cache.clear()
    original = AtomicScopedRateThrottle.THROTTLE_RATES
    AtomicScopedRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, **rates}
    try:
        yield
    finally:
        AtomicScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()


def tamper_with(stored, data=None):
    """Change a stored file's bytes on disk behind the application's back (a disk fault, an intruder).

    ``stored`` is a FieldFile; ``data`` replaces the bytes (default: the same bytes, one flipped).
    """
    from pathlib import Path

    path = Path(stored.path)
    if data is None:
        original = path.read_bytes()
        middle = len(original) // 2
        data = original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1:]
    path.write_bytes(data)
    return data


def integrity_failures():
    """The audit trail's entries for stored files that failed their integrity check, oldest first."""
    from auditlog.models import LogEntry

    entries = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).order_by("pk")
    return [e for e in entries if (e.additional_data or {}).get("action") == "integrity failure"]


# --- the second factor (accounts/): reviewers and admins must have one (PNEUMOWEB_OTP_REQUIRED) -------


def enrol_totp(user):
    """Give ``user`` a confirmed authenticator-app device, as enrolment ends; its codes: ``totp_code``."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.create(user=user, name="authenticator app", confirmed=True)


def totp_code(device, steps_ahead=0):
    """The six-digit code ``device`` accepts now. A code is accepted once: for a second use within the
    same 30 s, ask for the next step's (``steps_ahead=1``; the device allows one step of clock drift)."""
    from django_otp.oath import totp

    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift + steps_ahead):0{device.digits}d}"


def verify_session(client, user):
    """Mark the signed-in session of ``client`` as having given its one-time code, as the code step
    does (django-otp's session key), enrolling ``user`` first when they have no device.

    The requirement stays on in the tests: a reviewer or admin signed in with ``login()`` or
    ``force_login()`` alone is held at the code step or the enrolment, as in production.
    """
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or enrol_totp(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def signed_in_client(user):
    """A new test client signed in as ``user`` with the second factor done (for staff, reviewers, admins)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return verify_session(client, user)


def make_admin(username="root-admin"):
    """An administrator: a reviewer who is also a superuser, as ``create_user --role admin`` makes one."""
    from .factories import UserFactory

    admin = UserFactory(username=username, role="reviewer")
    admin.is_superuser = admin.is_staff = True
    admin.save()
    return admin


# --- the ml commands, run in this process ---------------------------------------------------------


def run_module(module, *args):
    """``python -m module args…`` in this process; a ``CompletedProcess`` with its exit code, stdout, stderr.

    A new interpreter costs ~3 s of CPU importing torch alone, and the ml tests ran ~30 commands:
    here the module runs as ``__main__`` (runpy) with ``sys.argv`` set, so it parses its own
    arguments, exits with its own code (argparse's 2, a refusal's 1) and writes what it writes.
    An exception that escapes the command is exit code 1 with its traceback on stderr, as Python
    prints it. tests/ml/test_ml_cli.py still starts one real ``python -m`` (predict) in a new interpreter.
    """
    import io
    import runpy
    import subprocess
    import sys
    import traceback

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [module, *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as stop:
                if isinstance(stop.code, str):
                    err.write(stop.code + "\n")
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 - what the interpreter would print before exiting 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess([sys.executable, "-m", module, *map(str, args)], code,
                                       out.getvalue(), err.getvalue())
