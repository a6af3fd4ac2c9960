"""Signing in with a second factor: the password step, the code step, enrolment, and the account page.

The password step is Django's LoginView (axes guards it); for a user with a second factor it signs
nobody in, but remembers a half sign-in (accounts/pending.py) and sends them to the code step, where
a code from their app or a recovery code finishes it with ``login()`` and django-otp's
``otp_login()``. A wrong code counts as a failed sign-in for axes (accounts/lockout.py). A user who
must have a second factor and has none is signed in by the password, and the middleware
(accounts/middleware.py) keeps them on the enrolment page until they have one.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model, login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from knox.models import AuthToken
from knox.settings import knox_settings

from . import pending
from .forms import CodeForm
from .lockout import is_locked_out, lockout_response, record_wrong_code
from .roles import is_pacs_sender
from .second_factor import (
    app_device,
    confirm_enrolment,
    device_to_enrol,
    enrolment_uri,
    has_second_factor,
    must_use_second_factor,
    new_recovery_codes,
    qr_svg,
    recovery_codes_left,
    remove_second_factor,
    secret_of,
    verify_code,
    wrong_code_message,
)

WRONG_CODE = "That code is wrong, expired or already used."


class PasswordStep(LoginView):
    """The sign-in page. A right password signs in a user without a second factor, as before; one
    with a second factor goes on to the code step, still signed out."""

    def form_valid(self, form):
        user = form.get_user()
        if is_pacs_sender(user):
            # A sending system's account holds a token; a page session would be a second way in.
            form.add_error(None, "This account sends studies from a PACS: it cannot sign in to pages.")
            return self.form_invalid(form)
        if has_second_factor(user):
            if self.request.user.is_authenticated:
                logout(self.request)  # whoever this browser was signed in as is not, while another owes a code
            pending.remember(self.request, user, self.get_success_url())
            return redirect("second_factor_code")
        return super().form_valid(form)


@require_http_methods(["GET", "POST"])
def code_step(request):
    """The second step: a half sign-in from the password step, or a session signed in some other way
    (an old session, the test client) that still owes its code — the middleware sends that one here."""
    if request.user.is_authenticated and (request.user.is_verified() or not has_second_factor(request.user)):
        return redirect(safe_next(request))
    owing = code_owed_by(request)
    if owing is None:
        messages.info(request, "Sign in again: the sign-in had expired.")
        return redirect("login")
    user, backend, next_url = owing
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        if is_locked_out(request, user.get_username()):
            return lockout_response(request)
        if form.is_valid():
            device = verify_code(user, form.cleaned_data["otp_token"])
            if device is not None:
                pending.forget(request)
                login(request, user, backend=backend)  # a new session key; axes clears the failures
                otp_login(request, device)
                return redirect(next_url)
            record_wrong_code(request, user.get_username())  # axes' middleware answers 429 once it locks
            form.add_error("otp_token", wrong_code_message(user, WRONG_CODE))
    return render(request, "accounts/code_step.html",
                  {"form": form, "username": user.get_username(), "next": next_url})


def code_owed_by(request):
    """(user, backend, next URL) of whoever owes a code in this session, or None."""
    if request.user.is_authenticated:
        user = get_user_model().objects.get(pk=request.user.pk)
        return user, request.session.get(BACKEND_SESSION_KEY), safe_next(request)
    half = pending.pending(request)
    if half is None or not has_second_factor(half[0]):
        return None
    return half


def safe_next(request):
    """Where to go after a step: ``next`` when it stays on this site, else the worklist."""
    candidate = request.POST.get("next") or request.GET.get("next")
    # A path on this site only: redirect() would take a bare word ("dashboard", "a b") for a view name.
    if candidate and candidate.startswith("/") and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request):
    """Add an authenticator app: scan the QR code (or type the secret), confirm with a code, then the
    ten recovery codes are shown, once."""
    if has_second_factor(request.user):
        messages.info(request, "This account already has a second factor.")
        return redirect("second_factor")
    device = device_to_enrol(request.user)
    form = CodeForm(request.POST or None)
    form.fields["otp_token"].help_text = "The six digits the app shows now for PneumoWeb."  # no recovery codes yet
    if request.method == "POST" and form.is_valid():
        confirmed = confirm_enrolment(device, form.cleaned_data["otp_token"])
        if confirmed is not None:
            request.session.cycle_key()  # the session is worth more now: a new id for it
            otp_login(request, confirmed)
            return recovery_codes_page(request, new_recovery_codes(request.user), safe_next(request),
                                       "Your second factor is on.")
        form.add_error("otp_token", WRONG_CODE + " Check that the code is the one the app shows for PneumoWeb, and that the phone's clock is right.")
    return render(request, "accounts/enrol.html", {
        "form": form, "qr": qr_svg(device), "secret": secret_of(device), "uri": enrolment_uri(device),
        "required": must_use_second_factor(request.user), "next": safe_next(request),
    })


def recovery_codes_page(request, codes, next_url, heading):
    return render(request, "accounts/recovery_codes.html", {"codes": codes, "next": next_url, "heading": heading})


@login_required
@require_http_methods(["GET", "POST"])
def second_factor(request):
    """Whether a second factor is on; new recovery codes; turning it off (with a code) where it is not required."""
    user = request.user
    device, required = app_device(user), must_use_second_factor(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and device is not None:
        action = request.POST.get("action")
        if action == "recovery-codes":
            return recovery_codes_page(request, new_recovery_codes(user), reverse("second_factor"),
                                       "New recovery codes")
        if action == "remove" and not required:
            if is_locked_out(request, user.get_username()):
                return lockout_response(request)
            if form.is_valid():
                if verify_code(user, form.cleaned_data["otp_token"]) is not None:
                    remove_second_factor(user)
                    messages.success(request, "Your second factor is off: you sign in with your password alone.")
                    return redirect("second_factor")
                record_wrong_code(request, user.get_username())
                form.add_error("otp_token", wrong_code_message(user, WRONG_CODE))
    return render(request, "accounts/second_factor.html", {
        "device": device, "required": required, "form": form,
        "codes_left": recovery_codes_left(user) if device else 0,
    })


def admin_login(request):
    """The admin's own login form signs in with a password alone: its URL leads to the site's two steps."""
    next_url = request.GET.get("next") or reverse("admin:index")
    return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}")


# --- API tokens for a signed-in person (the API's own endpoint: accounts/api.py) -----------------


@never_cache  # the page may show a secret
@login_required
@require_http_methods(["GET", "POST"])
def api_token(request):
    """Create a token (shown once: only its hash is stored), or revoke them all."""
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            AuthToken.objects.filter(user=request.user).delete()
            messages.success(request, "Your API tokens were revoked.")
            return redirect("api_token")
        instance, token = AuthToken.objects.create(user=request.user, expiry=knox_settings.TOKEN_TTL)
        messages.success(request, "A new API token was created. Copy it now: it cannot be shown again.")
        return render(request, "accounts/api_token.html",
                      {"tokens": tokens_of(request.user), "new_token": token, "new_expiry": instance.expiry})
    return render(request, "accounts/api_token.html", {"tokens": tokens_of(request.user)})


def tokens_of(user):
    return AuthToken.objects.filter(user=user).order_by("-created")
