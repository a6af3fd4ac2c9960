"""POST /api/auth/token/ with a second factor: ``otp_token`` beside the password, counted by the lockout."""

import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.second_factor import new_recovery_codes

from ..base import api_client_for, enrol_totp, totp_code
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN = reverse("api:token")
LIST = reverse("api:prediction-list")


def ask(user, password=PASSWORD, address="10.0.0.1", client=None, **extra):
    return (client or APIClient()).post(TOKEN, {"username": user.username, "password": password, **extra},
                                        REMOTE_ADDR=address, format="json")


def wrong(device):
    return f"{(int(totp_code(device)) + 500_000) % 1_000_000:06d}"


@pytest.fixture
def device(reviewer):
    return enrol_totp(reviewer)


def test_it_asks_an_account_with_a_second_factor_for_its_code(reviewer, device):
    for extra in ({}, {"otp_token": ""}, {"otp_token": "  "}):
        response = ask(reviewer, **extra)
        assert response.status_code == 400
        assert response.json()["code"] == "otp_required" and "otp_token" in response.json()["detail"]
    assert not AuthToken.objects.exists()


def test_it_issues_a_token_with_the_right_code_that_works_as_before(reviewer, device):
    response = ask(reviewer, otp_token=totp_code(device))
    assert response.status_code == 200 and set(response.json()) == {"token", "expiry"}
    api = APIClient(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api.get(LIST).status_code == 200


def test_it_issues_one_for_a_recovery_code_once(reviewer, device):
    code = new_recovery_codes(reviewer)[0]
    assert ask(reviewer, otp_token=code).status_code == 200
    again = ask(reviewer, otp_token=code)
    assert again.status_code == 400 and again.json()["code"] == "otp_invalid"


def test_it_refuses_a_wrong_code(reviewer, device):
    response = ask(reviewer, otp_token=wrong(device))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "otp_invalid" and body["detail"].startswith("The one-time code is wrong, expired or already used.")
    assert "try again in" in body["detail"]  # the pause django-otp keeps after a wrong code is said
    assert not AuthToken.objects.exists()


def test_a_wrong_password_says_nothing_about_a_second_factor(reviewer, device):
    response = ask(reviewer, password="wrong", otp_token=totp_code(device))
    assert response.status_code == 400 and response.json() == {"detail": "Unable to sign in with the credentials given."}


def test_it_locks_out_code_guessing_as_it_does_password_guessing(reviewer, device, settings):
    settings.AXES_ENABLED, settings.AXES_FAILURE_LIMIT = True, 5
    client = APIClient()
    answers = [ask(reviewer, client=client, otp_token=wrong(device)).status_code for _ in range(7)]
    assert answers[:4] == [400] * 4 and set(answers[4:]) == {429}
    locked = ask(reviewer, client=client, otp_token=totp_code(device))
    assert locked.status_code == 429 and "wait 15 minutes" in locked.json()["detail"]
    assert ask(reviewer, address="10.0.0.2").json()["code"] == "otp_required"  # not locked from elsewhere
    assert not AuthToken.objects.exists()


def test_it_refuses_a_token_to_an_account_that_must_enrol_first(reviewer):
    response = ask(reviewer, otp_token="123456")
    assert response.status_code == 403
    assert response.json()["code"] == "otp_enrolment_required" and "enrol one in the web app" in response.json()["detail"]
    assert not AuthToken.objects.exists()


def test_it_needs_no_code_from_a_clinician_without_one(clinician):
    assert ask(clinician).status_code == 200
    assert ask(clinician, otp_token="123456").status_code == 200  # nothing to check it against: ignored


def test_it_issues_to_a_reviewer_without_one_when_the_setting_is_off(reviewer, settings):
    settings.PNEUMOWEB_OTP_REQUIRED = False
    assert ask(reviewer).status_code == 200


def test_the_schema_documents_the_code_and_the_new_answers(clinician):
    schema = api_client_for(clinician).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/auth/token/"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][body]
    assert "otp_token" in fields["properties"] and "otp_token" not in fields["required"]
    assert "recovery code" in fields["properties"]["otp_token"]["description"]
    assert operation["responses"]["403"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenRefusal")
    bad_request = operation["responses"]["400"]["content"]["application/json"]["schema"]["anyOf"]
    assert [s["$ref"].rsplit("/", 1)[1] for s in bad_request] == ["TokenRefusal", "Error"]  # or messages per field
    refusal = schema["components"]["schemas"]["TokenRefusal"]["properties"]
    [ref] = [part["$ref"] for part in refusal["code"]["allOf"]]
    enum = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["enum"]
    assert ref.endswith("/TokenRefusalCodeEnum")
    assert set(enum) == {"otp_required", "otp_invalid", "otp_enrolment_required"}
    assert "otp_required" in operation["responses"]["400"]["description"]
    assert "otp_enrolment_required" in operation["responses"]["403"]["description"]
