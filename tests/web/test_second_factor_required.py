"""Who must have a second factor (PNEUMOWEB_OTP_REQUIRED, _FOR_CLINICIANS), and what a session that owes one reaches."""

import pytest
from django.urls import reverse

from accounts.second_factor import must_use_second_factor

from ..base import api_client_for, enrol_totp
from ..factories import PASSWORD, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

ENROL = reverse("second_factor_enrol")


@pytest.fixture
def reviewer_by_password(client, reviewer):
    """A reviewer without a second factor, past the password step (what every page must hold back)."""
    response = client.post(reverse("login"), {"username": reviewer.username, "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(reviewer.pk)
    return client


def test_it_requires_one_of_staff_superusers_and_reviewers_but_not_clinicians(reviewer, clinician):
    staff, superuser, reviewer_without_staff = (UserFactory(role=role) for role in ("clinician", "clinician", "reviewer"))
    staff.is_staff = superuser.is_superuser = True
    reviewer_without_staff.is_staff = False  # the reviewer group's permission to see every record is enough
    assert all(must_use_second_factor(u) for u in (reviewer, staff, superuser, reviewer_without_staff))
    assert not must_use_second_factor(clinician)


def test_it_sends_a_reviewer_without_one_to_enrolment_after_the_password(reviewer_by_password):
    response = reviewer_by_password.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == f"{ENROL}?next=%2F"
    page = reviewer_by_password.get(ENROL)
    assert page.status_code == 200 and "must sign in with a one-time code" in page.content.decode()


def test_it_keeps_them_from_patient_pages_and_the_admin_until_enrolled(reviewer_by_password, patient):
    for url in (reverse("patient_list"), reverse("patient_detail", args=[patient.pk]), reverse("review_queue"),
                reverse("api_token"), reverse("admin:index"), reverse("admin:diagnosis_prediction_changelist"),
                reverse("second_factor")):
        response = reviewer_by_password.get(url)
        assert response.status_code == 302 and response["Location"].startswith(ENROL), url
    posted = reviewer_by_password.post(reverse("patient_create"), {"mrn": "X1", "name": "Held Back", "sex": "F"})
    assert posted.status_code == 302 and posted["Location"].startswith(ENROL)
    assert not PatientFactory._meta.model.objects.filter(mrn="X1").exists()


def test_it_answers_an_api_call_of_that_session_with_403_and_a_code(reviewer_by_password, patient):
    for url in (reverse("api:patient-list"), reverse("api:prediction-list"), "/api/schema/"):
        response = reviewer_by_password.get(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 403, url
        assert response.json()["code"] == "otp_enrolment_required" and "enrol" in response.json()["detail"]


def test_it_lets_them_sign_out(reviewer_by_password):
    response = reviewer_by_password.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert "_auth_user_id" not in reviewer_by_password.session


def test_a_session_that_owes_its_code_gets_otp_required_from_the_api(client, reviewer):
    enrol_totp(reviewer)
    assert client.login(username=reviewer.username, password=PASSWORD)
    response = client.get(reverse("api:prediction-list"))
    assert response.status_code == 403 and response.json()["code"] == "otp_required"


def test_a_token_is_not_a_session_and_is_not_held_back(reviewer):
    # Tokens are only issued after the code (the token endpoint's own tests); the middleware is for sessions.
    assert api_client_for(reviewer).get(reverse("api:prediction-list")).status_code == 200


def test_it_does_not_require_one_of_a_clinician_by_default(logged_in, patient):
    assert logged_in.get(reverse("patient_detail", args=[patient.pk])).status_code == 200
    assert logged_in.get(reverse("api:patient-list")).status_code == 200
    assert "Off: you sign in with your password alone." in logged_in.get(reverse("second_factor")).content.decode()


def test_it_requires_one_of_every_account_with_the_setting_for_clinicians(logged_in, settings):
    settings.PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS = True
    assert logged_in.get(reverse("dashboard"))["Location"].startswith(ENROL)


def test_it_requires_none_with_the_setting_off(client, reviewer, settings):
    settings.PNEUMOWEB_OTP_REQUIRED = False
    assert client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(reverse("review_queue")).status_code == 200
    assert client.get(reverse("admin:index")).status_code == 200


def test_with_the_setting_off_whoever_has_one_still_gives_the_code(client, clinician, settings):
    settings.PNEUMOWEB_OTP_REQUIRED = False
    enrol_totp(clinician)
    response = client.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert response["Location"] == reverse("second_factor_code")
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("login"))
