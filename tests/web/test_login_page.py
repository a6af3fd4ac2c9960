"""The login page (Django's LoginView with our template) and logging out."""

import pytest
from django.test import Client
from django.urls import reverse

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("login")


def test_it_shows_the_login_form(client):
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_username"' in html and 'id="id_password"' in html
    assert 'data-testid="login-submit"' in html
    assert "csrfmiddlewaretoken" in html
    assert 'name="viewport"' in html
    # Nothing of the signed-in navigation is shown to an anonymous visitor.
    assert reverse("patient_list") not in html and reverse("logout") not in html


def test_it_keeps_next_in_a_hidden_field(client):
    html = client.get(URL, {"next": "/patients/"}).content.decode()
    assert '<input type="hidden" name="next" value="/patients/">' in html


def test_it_logs_in_and_goes_to_the_worklist(client, clinician):
    response = client.post(URL, {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200


def test_it_follows_next_after_login(client, clinician):
    response = client.post(URL, {"username": clinician.username, "password": PASSWORD, "next": "/patients/"})
    assert response.status_code == 302 and response["Location"] == "/patients/"


def test_it_ignores_an_offsite_next(client, clinician):
    response = client.post(URL, {"username": clinician.username, "password": PASSWORD, "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")


def test_it_shows_wrong_credentials_inline(client, clinician):
    response = client.post(URL, {"username": clinician.username, "password": "wrong"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Please enter a correct username and password" in html
    assert f'value="{clinician.username}"' in html  # the username is kept
    assert "_auth_user_id" not in client.session


def test_it_shows_missing_fields_inline(client):
    response = client.post(URL, {"username": "", "password": ""})
    assert response.status_code == 200
    assert response.content.decode().count("This field is required.") == 2


def test_it_refuses_an_inactive_user(client, clinician):
    clinician.is_active = False
    clinician.save()
    response = client.post(URL, {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_it_enforces_csrf_on_login(clinician):
    client = Client(enforce_csrf_checks=True)
    response = client.post(URL, {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 403


def test_it_logs_out_with_a_post_form(logged_in):
    html = logged_in.get(reverse("dashboard")).content.decode()
    assert f'method="post" action="{reverse("logout")}"' in html
    response = logged_in.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert logged_in.get(reverse("dashboard")).status_code == 302


def test_it_does_not_log_out_on_get(logged_in):
    assert logged_in.get(reverse("logout")).status_code == 405
    assert logged_in.get(reverse("dashboard")).status_code == 200
