"""/account/session/: the idle sign-out's time left (GET, background) and "Stay signed in" (POST) for idle-timeout.js."""

import time

import pytest
from django.test import Client
from django.urls import reverse

from accounts.idle import LAST_ACTIVITY

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("session_activity")
BACKGROUND = {"HTTP_X_BACKGROUND_REQUEST": "1", "HTTP_ACCEPT": "application/json"}


def idle_for(client, seconds):
    session = client.session
    session[LAST_ACTIVITY] -= seconds
    session.save()


def test_it_says_how_long_is_left_without_counting_as_activity(logged_in):
    idle_for(logged_in, 300)
    before = logged_in.session[LAST_ACTIVITY]
    response = logged_in.get(URL, **BACKGROUND)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["timeout"] == 900 and body["warning"] == 120
    assert 599 <= body["remaining"] <= 601
    assert logged_in.session[LAST_ACTIVITY] == before


def test_stay_signed_in_counts_as_activity(logged_in):
    idle_for(logged_in, 850)
    response = logged_in.post(URL, **BACKGROUND)  # even sent as background: the POST is the person's click
    assert response.status_code == 200 and response.json()["remaining"] == 900
    assert logged_in.session[LAST_ACTIVITY] == pytest.approx(time.time(), abs=2)
    idle_for(logged_in, 800)
    assert logged_in.get(reverse("dashboard")).status_code == 200


def test_stay_signed_in_writes_even_within_the_write_interval(logged_in):
    idle_for(logged_in, 2)
    logged_in.post(URL)
    assert logged_in.session[LAST_ACTIVITY] == pytest.approx(time.time(), abs=0.5)


def test_it_answers_401_json_to_a_session_not_signed_in(client):
    response = client.get(URL, **BACKGROUND)
    assert response.status_code == 401 and response.json() == {"detail": "Not signed in."}
    assert client.post(URL).status_code == 401


def test_it_signs_out_an_expired_session_and_the_login_page_says_why(logged_in):
    idle_for(logged_in, 901)
    response = logged_in.get(URL, **BACKGROUND)
    assert response.status_code == 401
    assert response.json()["detail"] == "You were signed out after 15 minutes without activity. Sign in again."
    assert "_auth_user_id" not in logged_in.session
    # idle-timeout.js then goes to the login page.
    assert "without activity" in logged_in.get(reverse("login"), {"next": "/"}).content.decode()


def test_stay_signed_in_is_too_late_after_the_period(logged_in):
    idle_for(logged_in, 901)
    assert logged_in.post(URL, HTTP_ACCEPT="application/json").status_code == 401  # as the script sends it
    assert logged_in.get(reverse("dashboard")).status_code == 302


def test_it_enforces_csrf_on_stay_signed_in(clinician):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    assert client.post(URL).status_code == 403
    client.get(reverse("dashboard"))  # sets the CSRF cookie the script reads
    token = client.cookies["csrftoken"].value
    assert client.post(URL, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_it_refuses_other_methods(logged_in):
    assert logged_in.put(URL).status_code == 405
    assert logged_in.delete(URL).status_code == 405
