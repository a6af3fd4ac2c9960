"""The second factor: RFC 6238 one-time codes from an authenticator app (django-otp), and recovery codes.

A user *has a second factor* when they have a confirmed TOTP device. Beside it, a django-otp static
device holds their recovery codes: ten single-use codes, each accepted once in place of the app's
code (for a lost or dead phone). Recovery codes alone are not a second factor — once spent,
nothing would be left to sign in with — so an account with only those enrols an app again.

Who *must* have one (PNEUMOWEB_OTP_REQUIRED, on by default): staff (the admin site), superusers,
and whoever may read every patient's records (the reviewer role); PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS
extends it to every account. Anyone may add one; only someone not required to may remove it.

Codes are checked against one kind of device by their shape (six digits: the app; otherwise a
recovery code), so a wrong app code does not also count against the recovery codes' throttle.
django-otp's own throttling stays on for both (a growing wait after each wrong code, per device),
and a TOTP code is accepted once: the next must be from a later 30-second step.
"""

from base64 import b32encode
from math import ceil

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .roles import SEES_EVERY_RECORD, is_pacs_sender

RECOVERY_CODE_COUNT = 10
APP_DEVICE_NAME = "authenticator app"
RECOVERY_DEVICE_NAME = "recovery codes"


def is_privileged(user):
    """Staff, superusers and reviewers: the accounts whose password alone would open every record."""
    return user.is_staff or user.is_superuser or user.has_perm(SEES_EVERY_RECORD)


def must_use_second_factor(user):
    if not settings.PNEUMOWEB_OTP_REQUIRED:
        return False
    if is_pacs_sender(user) and not is_privileged(user):
        return False  # a sending system has no person to type a code (it never signs in to pages)
    return settings.PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS or is_privileged(user)


def app_device(user):
    """The user's confirmed authenticator-app device, or None."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def has_second_factor(user):
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user):
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


# --- enrolment ------------------------------------------------------------------------------------


def device_to_enrol(user):
    """The unconfirmed app device being enrolled: the same secret on every visit until a code confirms it."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)


def secret_of(device):
    """The key as authenticator apps take it typed in: base32, without padding."""
    return b32encode(device.bin_key).decode().rstrip("=")


def enrolment_uri(device):
    """``otpauth://totp/PneumoWeb:<username>?secret=…&issuer=PneumoWeb`` (OTP_TOTP_ISSUER names the issuer)."""
    return device.config_url


def qr_svg(device):
    """The enrolment URI as a QR code, an inline SVG (no script, no style attribute: the CSP holds)."""
    code = segno.make(enrolment_uri(device), error="m")
    return code.svg_inline(scale=4, border=4, dark="#000", light="#fff", svgclass="qr", lineclass=None,
                           title="QR code to scan with an authenticator app")


def confirm_enrolment(device, code):
    """Confirm ``device`` with a code it produced: the confirmed device (the user now has a second
    factor, and other unconfirmed attempts are dropped), or None for a wrong code."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if device.confirmed or not device.verify_token(normalised(code)):
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=device.user, confirmed=False).delete()
    return device


def new_recovery_codes(user):
    """Replace the user's recovery codes with ten new ones, returned to be shown once.

    The device is kept (only its codes change): a session verified with a recovery code stays verified.
    """
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    with transaction.atomic():
        device = StaticDevice.objects.filter(user=user).order_by("pk").first()
        if device is None:
            device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME)
        device.token_set.all().delete()
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def remove_second_factor(user):
    """Delete the user's app devices and recovery codes; returns how many devices (not codes) went."""
    with transaction.atomic():
        devices = [TOTPDevice.objects.filter(user=user), StaticDevice.objects.filter(user=user)]
        count = sum(queryset.count() for queryset in devices)
        for queryset in devices:
            queryset.delete()
    return count


# --- checking a code ------------------------------------------------------------------------------


def normalised(code):
    """Spaces and dashes are how people copy codes ("123 456", "abcd-efgh"); recovery codes are lower case."""
    return "".join((code or "").split()).replace("-", "").lower()


def is_app_code(code):
    return len(code) == 6 and code.isdigit()


def verify_code(user, code):
    """The device of ``user`` that accepts ``code`` (used up by this call), or None.

    The rows are locked while a code is checked, so two requests cannot both spend one code.
    """
    code = normalised(code)
    if not code:
        return None
    model = TOTPDevice if is_app_code(code) else StaticDevice
    if model is StaticDevice and not has_second_factor(user):
        return None  # recovery codes stand in for an app, never for none
    with transaction.atomic():
        for device in model.objects.devices_for_user(user, confirmed=True).select_for_update().order_by("pk"):
            if device.verify_token(code):
                return device
    return None


def wrong_code_message(user, message):
    """``message``, and when a next code will be checked if the app's device is throttled after wrong codes.

    django-otp refuses every code, the right one too, for 2^(failures−1) seconds after a wrong one: a
    correct code typed a second later read as "wrong" (issue 29). Now the person is told to wait.
    """
    wait = 0
    for device in TOTPDevice.objects.devices_for_user(user, confirmed=True):
        allowed, details = device.verify_is_allowed()
        locked_until = (details or {}).get("locked_until")
        if not allowed and locked_until:
            wait = max(wait, (locked_until - timezone.now()).total_seconds())
    if wait <= 0:
        return message
    return f"{message} After a wrong code the next is checked only after a pause: try again in {ceil(wait)} s."
