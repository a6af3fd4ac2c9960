"""Every page needs a login; a clinician never reaches another clinician's records."""

import pytest
from django.urls import reverse

from .factories import PASSWORD, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign_prediction(foreign_patient):
    return PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)


def page_urls(prediction):
    study, patient = prediction.study, prediction.study.patient
    return [
        reverse("dashboard"),
        reverse("patient_list"),
        reverse("patient_create"),
        reverse("patient_detail", args=[patient.pk]),
        reverse("upload"),
        reverse("prediction_detail", args=[prediction.pk]),
        reverse("study_image", args=[study.pk]),
        reverse("study_thumbnail", args=[study.pk]),
        reverse("api_token"),
    ]


def test_it_sends_anonymous_users_to_login(client, foreign_prediction):
    for url in page_urls(foreign_prediction):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_it_hides_another_clinicians_records(logged_in, foreign_prediction):
    study, patient = foreign_prediction.study, foreign_prediction.study.patient
    for url in [
        reverse("patient_detail", args=[patient.pk]),
        reverse("prediction_detail", args=[foreign_prediction.pk]),
        reverse("study_image", args=[study.pk]),
        reverse("study_thumbnail", args=[study.pk]),
    ]:
        assert logged_in.get(url).status_code == 404, url
    for url in [reverse("dashboard"), reverse("patient_list") + f"?q={patient.mrn}"]:
        html = logged_in.get(url).content.decode()
        assert patient.get_absolute_url() not in html and patient.name not in html, url


def test_it_shows_a_reviewer_everyones_records(client, reviewer, foreign_prediction):
    assert client.login(username=reviewer.username, password=PASSWORD)
    for url in page_urls(foreign_prediction):
        assert client.get(url).status_code == 200, url
    assert foreign_prediction.study.patient.mrn in client.get(reverse("dashboard")).content.decode()


def test_it_logs_in_and_out(client, clinician):
    response = client.post(reverse("login"), {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("dashboard")).status_code == 302


def test_it_shows_login_errors_inline(client, clinician):
    response = client.post(reverse("login"), {"username": clinician.username, "password": "wrong"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
