"""POST /api/auth/token/ and /api/auth/revoke/: hashed, expiring tokens; lockout after repeated failures."""

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from ..base import api_client_for, throttle_rates
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN = reverse("api:token")
LIST = reverse("api:prediction-list")


def sign_in(client, username, password=PASSWORD, address="10.0.0.1"):
    return client.post(TOKEN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_it_issues_a_token_that_expires_and_is_stored_hashed(clinician, settings):
    response = sign_in(APIClient(), clinician.username)
    assert response.status_code == 200
    body = response.json()
    token = body["token"]
    stored = AuthToken.objects.get(user=clinician)
    ttl = settings.REST_KNOX["TOKEN_TTL"]
    assert timezone.now() + ttl - timezone.timedelta(minutes=1) < stored.expiry <= timezone.now() + ttl
    assert body["expiry"]
    with connection.cursor() as cursor:  # nothing in the database is the token
        cursor.execute("SELECT digest, token_key FROM knox_authtoken")
        assert all(token not in row for row in cursor.fetchall())
    api = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get(LIST).status_code == 200


def test_it_refuses_an_expired_token(clinician):
    _, token = AuthToken.objects.create(user=clinician, expiry=timezone.timedelta(seconds=-1))
    response = APIClient(HTTP_AUTHORIZATION=f"Token {token}").get(LIST)
    assert response.status_code == 401
    assert not AuthToken.objects.filter(user=clinician).exists()  # and forgets it


def test_it_revokes_the_token_used_or_all_of_them(clinician):
    (_, first), (_, second) = AuthToken.objects.create(user=clinician), AuthToken.objects.create(user=clinician)
    api = APIClient(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.post(reverse("api:token-revoke")).status_code == 204
    assert api.get(LIST).status_code == 401
    other = APIClient(HTTP_AUTHORIZATION=f"Token {second}")
    assert other.get(LIST).status_code == 200
    assert other.post(reverse("api:token-revoke") + "?all=true").status_code == 204
    assert not AuthToken.objects.filter(user=clinician).exists()


@pytest.mark.parametrize("data", [{}, {"username": "x"}, {"password": "y"}])
def test_it_says_which_field_is_missing(data):
    response = APIClient().post(TOKEN, data)
    assert response.status_code == 400 and set(response.json()) <= {"username", "password"}


def test_it_gives_the_same_answer_for_a_wrong_password_and_an_unknown_user(clinician):
    wrong = sign_in(APIClient(), clinician.username, "wrong")
    unknown = sign_in(APIClient(), "nobody-here", "wrong")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"detail": "Unable to sign in with the credentials given."}


@pytest.fixture
def lockouts(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5


def test_it_locks_out_password_guessing_and_lets_the_user_back_after_the_cool_off(clinician, lockouts):
    from axes.models import AccessAttempt

    client = APIClient()
    answers = [sign_in(client, clinician.username, f"guess-{i}").status_code for i in range(8)]
    assert answers[:4] == [400] * 4 and set(answers[4:]) == {429}
    locked = sign_in(client, clinician.username)  # even the right password, while locked
    assert locked.status_code == 429 and "wait 15 minutes" in locked.json()["detail"]
    # Another address is not locked out for this user (an attacker cannot lock a clinician out everywhere).
    assert sign_in(client, clinician.username, address="10.0.0.2").status_code == 200
    # The cool-off ends: the user signs in again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timezone.timedelta(minutes=16))
    assert sign_in(client, clinician.username).status_code == 200


def test_the_login_page_locks_out_too(client, clinician, lockouts):
    url = reverse("login")
    for i in range(5):
        client.post(url, {"username": clinician.username, "password": f"guess-{i}"}, REMOTE_ADDR="10.0.0.9")
    response = client.post(url, {"username": clinician.username, "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 429
    assert "Too many wrong passwords" in response.content.decode()


def test_it_throttles_token_requests_per_address():
    with throttle_rates(auth="3/min"):
        answers = [sign_in(APIClient(), "nobody", "x").status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]


def test_it_moves_old_plain_text_tokens_to_hashed_ones(clinician):
    import importlib

    migration = importlib.import_module("diagnosis.migrations.0008_hash_api_tokens")
    key = "a1" * 20  # a DRF token: 40 hex characters
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id bigint, created timestamp"
                       " with time zone)" if connection.vendor == "postgresql" else
                       "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id bigint, created datetime)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, clinician.pk, timezone.now()])

    from types import SimpleNamespace

    from django.apps import apps

    def execute(sql):
        with connection.cursor() as cursor:
            cursor.execute(sql)

    migration.hash_existing_tokens(apps, SimpleNamespace(connection=connection, execute=execute))
    assert "authtoken_token" not in connection.introspection.table_names()
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get(LIST).status_code == 200
    assert AuthToken.objects.get(user=clinician).expiry is not None


@pytest.mark.parametrize("body", [[1, 2], "all", 3])
def test_it_revokes_only_the_token_used_for_a_body_that_is_not_an_object(clinician, body):
    client = api_client_for(clinician)
    AuthToken.objects.create(user=clinician)
    response = client.post(reverse("api:token-revoke"), body, format="json")
    assert response.status_code == 204
    assert AuthToken.objects.filter(user=clinician).count() == 1
