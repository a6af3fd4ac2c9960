"""Automatic sign-out of a browser session after PNEUMOWEB_IDLE_TIMEOUT_SECONDS without activity (accounts/idle.py).

Time travels by moving the session's stored last activity into the past, never by sleeping.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.urls import reverse

from accounts.idle import LAST_ACTIVITY
from accounts.sessions import RECORDED_KEY
from pneumoweb.var_dir import prepare

from ..base import signed_in_client
from ..factories import PASSWORD, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent.parent
BACKGROUND = {"HTTP_X_BACKGROUND_REQUEST": "1", "HTTP_ACCEPT": "application/json"}
SIGNED_OUT = "You were signed out after 15 minutes without activity."


def idle_for(client, seconds):
    """Time travel: the session's last activity moves ``seconds`` into the past."""
    session = client.session
    session[LAST_ACTIVITY] -= seconds
    session.save()


def last_activity(client):
    return client.session[LAST_ACTIVITY]


def session_exists(key):
    return Session.objects.filter(session_key=key).exists()


@pytest.fixture
def poll_url(patient):
    """What static/js/prediction-poll.js polls: a queued prediction in the API."""
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    return reverse("api:prediction-detail", args=[prediction.pk])


def test_it_redirects_an_idle_page_to_the_login_page_with_next_and_a_message(logged_in):
    key = logged_in.session.session_key
    idle_for(logged_in, 901)
    response = logged_in.get("/patients/", {"q": "ada"})
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/patients/%3Fq%3Dada"
    assert not session_exists(key)  # ended on the server, not only forgotten by the browser
    login_page = logged_in.get(response["Location"]).content.decode()
    assert SIGNED_OUT in login_page and 'name="next" value="/patients/?q=ada"' in login_page
    assert logged_in.get(reverse("dashboard"))["Location"].startswith(reverse("login"))


def test_it_keeps_a_session_within_the_period(logged_in):
    idle_for(logged_in, 899)
    assert logged_in.get(reverse("dashboard")).status_code == 200


def test_it_answers_an_expired_poll_with_401_json(logged_in, poll_url):
    assert logged_in.get(poll_url, **BACKGROUND).status_code == 200
    key = logged_in.session.session_key
    idle_for(logged_in, 901)
    response = logged_in.get(poll_url, **BACKGROUND)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": f"{SIGNED_OUT} Sign in again."}
    assert not session_exists(key)
    # The page then lands on the login page, which says why.
    assert SIGNED_OUT in logged_in.get(reverse("login")).content.decode()


def test_it_answers_json_to_a_request_that_asks_for_json_without_being_background(logged_in, poll_url):
    idle_for(logged_in, 901)
    response = logged_in.get(poll_url, HTTP_ACCEPT="application/json")
    assert response.status_code == 401 and response.json()["detail"].startswith(SIGNED_OUT)


def test_background_polls_do_not_count_as_activity(logged_in, poll_url):
    idle_for(logged_in, 600)
    before = last_activity(logged_in)
    for _ in range(3):
        assert logged_in.get(poll_url, **BACKGROUND).status_code == 200
    assert last_activity(logged_in) == before
    idle_for(logged_in, 301)  # 901 s since the last activity, polled all along
    assert logged_in.get(poll_url, **BACKGROUND).status_code == 401


def test_any_other_request_counts_as_activity(logged_in, poll_url):
    idle_for(logged_in, 600)
    logged_in.get(poll_url)  # the same poll, made by a person (no background header)
    assert last_activity(logged_in) == pytest.approx(time.time(), abs=5)
    idle_for(logged_in, 600)
    assert logged_in.get(reverse("dashboard")).status_code == 200


def test_it_writes_activity_at_most_every_few_seconds(logged_in):
    # A page's burst of image requests must not write the session row once each.
    idle_for(logged_in, 2)
    before = last_activity(logged_in)
    logged_in.get(reverse("dashboard"))
    assert last_activity(logged_in) == before
    idle_for(logged_in, 4)
    logged_in.get(reverse("dashboard"))
    assert last_activity(logged_in) == pytest.approx(time.time(), abs=2)


def test_signing_in_starts_the_period(client, clinician):
    client.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert last_activity(client) == pytest.approx(time.time(), abs=2)


def test_the_session_cookie_outlives_the_period_by_minutes_only(client, clinician):
    response = client.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert response.cookies["sessionid"]["max-age"] == 900 + 600


def test_token_requests_are_neither_activity_nor_refused(logged_in, clinician, poll_url):
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=clinician)
    idle_for(logged_in, 901)
    before, key = last_activity(logged_in), logged_in.session.session_key
    # A token authenticates an API request by itself, whatever session cookie comes with it.
    assert logged_in.get(poll_url, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert session_exists(key) and last_activity(logged_in) == before
    assert logged_in.get(poll_url).status_code == 401  # the idle session itself is still refused


def test_a_token_header_on_a_page_does_not_keep_an_idle_session(logged_in):
    # Pages ignore the Authorization header: the session signs them in, so the session's rule applies.
    idle_for(logged_in, 901)
    response = logged_in.get(reverse("patient_list"), HTTP_AUTHORIZATION="Token anything")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_login_page_ends_an_idle_session_and_shows_its_form(logged_in):
    key = logged_in.session.session_key
    idle_for(logged_in, 901)
    response = logged_in.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert SIGNED_OUT in html and 'id="id_username"' in html
    assert not session_exists(key)


def test_an_idle_sign_out_is_on_the_audit_trail(logged_in, clinician):
    idle_for(logged_in, 901)
    logged_in.get(reverse("dashboard"), REMOTE_ADDR="10.4.4.4")
    [entry] = [e for e in LogEntry.objects.filter(action=LogEntry.Action.ACCESS)
               if (e.additional_data or {}).get("action") == "sign out"]
    assert entry.actor == clinician and entry.remote_addr == "10.4.4.4"
    assert entry.object_pk == str(clinician.pk)
    assert entry.additional_data["what"] == "after inactivity"
    assert entry.additional_data["idle_seconds"] == pytest.approx(901, abs=2)


def test_signed_in_pages_carry_the_warning_script_and_its_times(logged_in, client, settings):
    html = logged_in.get(reverse("dashboard")).content.decode()
    assert ('<body data-idle-timeout="900" data-idle-warning="120" data-idle-url="/account/session/" '
            'data-login-url="/accounts/login/">') in html
    assert 'src="/static/js/idle-timeout.js"' in html
    logged_in.post(reverse("logout"))
    anonymous = client.get(reverse("login")).content.decode()
    assert "data-idle-timeout" not in anonymous and "idle-timeout.js" not in anonymous


def test_admin_pages_carry_the_warning_script_with_its_times(reviewer):
    html = signed_in_client(reviewer).get(reverse("admin:diagnosis_prediction_changelist")).content.decode()
    assert ('<script src="/static/js/idle-timeout.js" defer data-idle-timeout="900" data-idle-warning="120" '
            'data-idle-url="/account/session/" data-login-url="/accounts/login/"></script>') in html
    assert 'href="/static/css/idle-warning.css"' in html


def test_the_sites_polling_scripts_send_their_requests_as_background():
    for name in ("prediction-poll.js", "worklist-live.js", "idle-timeout.js"):
        script = (REPO / "static" / "js" / name).read_text()
        assert '"X-Background-Request": "1"' in script or '["X-Background-Request"] = "1"' in script, name


def test_a_database_outage_while_reading_the_session_is_a_503(logged_in, monkeypatch):
    from accounts import idle

    def down(session):
        raise OperationalError("connection refused")

    monkeypatch.setattr(idle, "signed_in_user_id", down)
    response = logged_in.get(reverse("dashboard"))
    assert response.status_code == 503 and response["Retry-After"] == "30"


def settings_of(tmp_path, **env):
    prepare(tmp_path)
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    code = "import django; django.setup(); from django.conf import settings as s; print(s.SESSION_COOKIE_AGE)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def test_it_refuses_an_idle_timeout_that_is_not_a_number_at_start(tmp_path):
    result = settings_of(tmp_path, PNEUMOWEB_IDLE_TIMEOUT_SECONDS="15m")
    assert result.returncode != 0
    assert "PNEUMOWEB_IDLE_TIMEOUT_SECONDS='15m' is not a whole number" in result.stderr


def test_short_settings_are_taken_from_the_environment(tmp_path):
    result = settings_of(tmp_path, PNEUMOWEB_IDLE_TIMEOUT_SECONDS="20", PNEUMOWEB_IDLE_WARNING_SECONDS="10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "620"


def test_a_session_signed_in_before_idle_sign_out_existed_is_treated_as_idle(logged_in):
    session = logged_in.session
    del session[LAST_ACTIVITY]
    session.save()
    response = logged_in.get("/patients/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_session_of_a_deleted_user_is_ended_and_answers_no_500(client):
    from ..factories import UserFactory

    user = UserFactory()
    assert client.login(username=user.username, password=PASSWORD)
    session = client.session
    session.pop(RECORDED_KEY, None)  # signed in before sessions were recorded
    session.save()
    user.delete()
    for path in (reverse("login"), "/patients/"):
        assert client.get(path).status_code in (200, 302)
