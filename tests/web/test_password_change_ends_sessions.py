"""A new password, by any path, ends every other session of the user and deletes all their API tokens (accounts/sessions.py).

The paths: the password-change page, the admin's password form, ``manage.py changepassword`` and
``manage.py create_user`` resetting a password. The changer's own session goes on.
"""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import SignedInSession

from ..base import signed_in_client
from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

NEW = "a-new-and-long-passphrase-41"


class QuickPBKDF2(PBKDF2PasswordHasher):
    iterations = 1000  # Django's own PBKDF2, cheap enough for a test
LIST = reverse("api:prediction-list")


def browser(user, password=PASSWORD):
    client = Client()
    assert client.login(username=user.username, password=password)
    assert signed_in(client)
    return client


def signed_in(client):
    return client.get(reverse("dashboard")).status_code == 200


@pytest.fixture
def elsewhere(clinician):
    """The clinician's other browser and an API script with a token, both working before the change."""
    _, token = AuthToken.objects.create(user=clinician)
    script = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert script.get(LIST).status_code == 200
    return browser(clinician), script


def assert_ended(elsewhere, user):
    other_browser, script = elsewhere
    assert not signed_in(other_browser)
    assert script.get(LIST).status_code == 401
    assert not AuthToken.objects.filter(user=user).exists()


def test_the_password_change_page_ends_the_others_and_keeps_the_changer_signed_in(clinician, elsewhere):
    changer = browser(clinician)
    response = changer.post(reverse("password_change"),
                            {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    assert changer.get(response["Location"]).status_code == 200
    assert signed_in(changer)
    assert_ended(elsewhere, clinician)
    # The changer's session, moved to a new key by Django, is recorded under it: sign out everywhere reaches it.
    assert list(SignedInSession.objects.filter(user=clinician).values_list("session_key", flat=True)) == [
        changer.session.session_key]


def test_the_admins_password_form_ends_the_users_sessions_and_tokens(clinician, elsewhere):
    admin = UserFactory(username="root-admin", role="reviewer")
    admin.is_superuser = admin.is_staff = True
    admin.save()
    admin_client = signed_in_client(admin)
    response = admin_client.post(reverse("admin:auth_user_password_change", args=[clinician.pk]),
                                 {"usable_password": "true", "password1": NEW, "password2": NEW})
    assert response.status_code == 302
    assert_ended(elsewhere, clinician)
    assert admin_client.get(reverse("admin:index")).status_code == 200  # the admin's own session goes on
    assert browser(clinician, NEW)


def test_manage_py_changepassword_ends_the_users_sessions_and_tokens(clinician, elsewhere, monkeypatch):
    from django.contrib.auth.management.commands import changepassword

    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="": NEW)
    call_command("changepassword", clinician.username, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert_ended(elsewhere, clinician)


def test_create_user_resetting_a_password_ends_the_users_sessions_and_tokens(clinician, elsewhere):
    call_command("create_user", clinician.username, "--role", "clinician", "--password", NEW,
                 stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert_ended(elsewhere, clinician)


def test_other_changes_to_the_user_and_signing_in_end_nothing(clinician, elsewhere):
    clinician.first_name = "Ada"
    clinician.save()
    browser(clinician)  # a sign-in saves last_login
    other_browser, script = elsewhere
    assert signed_in(other_browser) and script.get(LIST).status_code == 200


def test_django_rehashing_the_same_password_at_sign_in_revokes_no_token(clinician, elsewhere, settings):
    # A newer preferred hasher: the next correct sign-in stores a new hash of the same password.
    settings.PASSWORD_HASHERS = [f"{__name__}.QuickPBKDF2", "django.contrib.auth.hashers.MD5PasswordHasher"]
    before = clinician.password
    browser(clinician)
    clinician.refresh_from_db()
    assert clinician.password != before and clinician.password.startswith("pbkdf2_sha256$")
    _, script = elsewhere
    assert script.get(LIST).status_code == 200


def test_a_new_user_is_created_without_error():
    user = UserFactory(username="brand-new")
    assert browser(user)
