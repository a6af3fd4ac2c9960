"""POST /account/sign-out-everywhere/: every session of the user, on every device, and all their API tokens end."""

import pytest
from auditlog.models import LogEntry
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import SignedInSession
from accounts.sessions import check_session_engine

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("sign_out_everywhere")
LIST = reverse("api:prediction-list")


def browser(user):
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    assert client.get(reverse("dashboard")).status_code == 200
    return client


def token_client(user):
    _, token = AuthToken.objects.create(user=user)
    return APIClient(HTTP_AUTHORIZATION=f"Token {token}")


def signed_in(client):
    return client.get(reverse("dashboard")).status_code == 200


def test_it_ends_every_session_and_token_of_the_user_and_shows_the_login_page(clinician, other_clinician):
    here, laptop, phone = browser(clinician), browser(clinician), browser(clinician)
    script = token_client(clinician)
    theirs, their_script = browser(other_clinician), token_client(other_clinician)

    response = here.post(URL, follow=True)
    assert response.redirect_chain == [(reverse("login"), 302)]
    assert "You were signed out everywhere" in response.content.decode()
    assert not signed_in(here) and not signed_in(laptop) and not signed_in(phone)
    assert script.get(LIST).status_code == 401
    assert not AuthToken.objects.filter(user=clinician).exists()
    assert not SignedInSession.objects.filter(user=clinician).exists()
    # Ended on the server: no session row of the user is left to be used with an old cookie.
    assert not [s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(clinician.pk)]
    # Nobody else's.
    assert signed_in(theirs) and their_script.get(LIST).status_code == 200


def test_it_also_ends_a_session_whose_key_changed_and_one_signed_in_again(clinician):
    laptop = browser(clinician)
    laptop.post(reverse("logout"))
    assert browser(clinician) and laptop.login(username=clinician.username, password=PASSWORD)
    here = browser(clinician)
    here.post(URL)
    assert not signed_in(laptop)


def test_it_ends_sessions_kept_in_the_cache_engine_too(settings, clinician):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    here, laptop = browser(clinician), browser(clinician)
    here.post(URL)
    assert not signed_in(laptop) and not signed_in(here)


def test_it_is_on_the_audit_trail_with_what_it_ended(clinician):
    here, _ = browser(clinician), browser(clinician)
    token_client(clinician)
    here.post(URL, REMOTE_ADDR="10.5.5.5")
    [entry] = [e for e in LogEntry.objects.filter(action=LogEntry.Action.ACCESS)
               if (e.additional_data or {}).get("action") == "sign out"]
    assert entry.actor == clinician and entry.remote_addr == "10.5.5.5"
    assert entry.additional_data["what"] == "everywhere"
    assert entry.additional_data["sessions"] == 2 and entry.additional_data["tokens"] == 1


def test_the_account_page_has_the_button(logged_in):
    html = logged_in.get(reverse("api_token")).content.decode()
    assert f'<form method="post" action="{URL}">' in html
    assert 'data-testid="sign-out-everywhere-submit"' in html


def test_it_needs_a_post_with_csrf(clinician):
    client = browser(clinician)
    assert client.get(URL).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username=clinician.username, password=PASSWORD)
    assert strict.post(URL).status_code == 403
    assert signed_in(client) and signed_in(strict)


def test_it_needs_a_signed_in_user(client):
    response = client.post(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_system_check_refuses_sessions_the_server_cannot_end(settings):
    assert check_session_engine(None) == []
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    [error] = check_session_engine(None)
    assert error.id == "accounts.E001"
