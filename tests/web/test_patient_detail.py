import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from ..factories import PatientFactory, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def url(patient):
    return reverse("patient_detail", args=[patient.pk])


def test_it_requires_login(client, patient):
    response = client.get(url(patient))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_shows_the_patient(logged_in, patient, clinician):
    patient.date_of_birth = datetime.date(2019, 5, 4)
    patient.save()
    html = logged_in.get(url(patient)).content.decode()
    assert patient.name in html and patient.mrn in html and "Female" in html
    assert "May 4, 2019" in html
    assert clinician.username in html
    assert "No studies yet." in html


def test_it_offers_an_upload_for_this_patient(logged_in, patient):
    html = logged_in.get(url(patient)).content.decode()
    assert f'href="{reverse("upload")}?patient={patient.pk}"' in html and "Upload X-ray" in html


def test_it_shows_the_study_history(logged_in, patient, reviewer):
    reviewed = PredictionFactory(
        study=StudyFactory(patient=patient, view="LAT", age_years="7.25"), succeeded=True,
        review_verdict="disagree", review_label="NORMAL", reviewed_by=reviewer, reviewed_at=timezone.now(),
    )
    failed = PredictionFactory(study=StudyFactory(patient=patient), status="failed", error="boom")
    response = logged_in.get(url(patient))
    assert {p.pk for p in response.context["predictions"]} == {reviewed.pk, failed.pk}
    html = response.content.decode()
    for prediction in (reviewed, failed):
        assert f'href="{reverse("prediction_detail", args=[prediction.pk])}"' in html
        assert reverse("study_thumbnail", args=[prediction.study_id]) in html
        assert prediction.queued_at.strftime("%Y-%m-%d") in html
    assert "7.25 y" in html and "Lateral" in html
    assert ">PNEUMONIA<" in html and "91.0%" in html and "compact-test@abababababab" in html
    assert "badge-succeeded" in html and "badge-failed" in html
    assert "Disagree → NORMAL" in html


def test_it_shows_only_this_patients_studies(logged_in, patient, clinician):
    other = PatientFactory(owner=clinician)
    elsewhere = PredictionFactory(study=StudyFactory(patient=other), succeeded=True)
    response = logged_in.get(url(patient))
    assert list(response.context["predictions"]) == []
    assert reverse("prediction_detail", args=[elsewhere.pk]) not in response.content.decode()


def test_it_answers_404_for_another_clinicians_patient(logged_in, foreign_patient):
    PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    response = logged_in.get(url(foreign_patient))
    assert response.status_code == 404
    assert foreign_patient.name not in response.content.decode()


def test_it_answers_404_for_an_unknown_patient(logged_in):
    assert logged_in.get(reverse("patient_detail", args=[987654])).status_code == 404


def test_it_shows_a_reviewer_any_patient_without_an_upload_button(reviewer_client, foreign_patient):
    prediction = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    response = reviewer_client.get(url(foreign_patient))
    assert response.status_code == 200
    html = response.content.decode()
    assert foreign_patient.name in html
    assert reverse("prediction_detail", args=[prediction.pk]) in html
    assert "Upload X-ray" not in html and f"{reverse('upload')}?patient=" not in html
