"""The API and browser sessions: the idle sign-out's 401 in the schema; revoking every token leaves sessions alone."""

import pytest
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.idle import LAST_ACTIVITY

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

LIST = reverse("api:prediction-list")


def schema(api):
    return api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_revoking_every_token_leaves_the_browser_sessions_signed_in(clinician, logged_in):
    _, token = AuthToken.objects.create(user=clinician)
    script = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert script.post(reverse("api:token-revoke") + "?all=true").status_code == 204
    assert script.get(LIST).status_code == 401
    assert logged_in.get(reverse("dashboard")).status_code == 200


def test_the_schema_says_what_revoking_all_tokens_ends(api):
    operation = schema(api)["paths"]["/api/auth/revoke/"]["post"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "all"]
    assert parameter["in"] == "query" and parameter["schema"]["type"] == "boolean"
    assert "browser sessions are not ended" in parameter["description"]


def test_the_schema_documents_the_idle_sign_out_401(api):
    for path, operations in schema(api)["paths"].items():
        if path == "/api/auth/token/":
            continue
        for operation in operations.values():
            assert "without activity" in operation["responses"]["401"]["description"], path


def test_a_session_signed_in_api_call_after_the_idle_period_is_the_documented_401(clinician):
    browser = Client()
    assert browser.login(username=clinician.username, password=PASSWORD)
    session = browser.session
    session[LAST_ACTIVITY] -= 901
    session.save()
    response = browser.get(LIST)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"detail"}  # the documented Error shape
