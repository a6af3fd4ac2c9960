import pytest
from django.urls import reverse

from ..base import api_client_for, integrity_failures, tamper_with
from ..factories import StudyFactory, xray_bytes

pytestmark = pytest.mark.django_db


def test_it_lists_own_studies(api, patient, foreign_patient):
    mine = StudyFactory(patient=patient)
    StudyFactory(patient=foreign_patient)
    results = api.get(reverse("api:study-list")).json()["results"]
    assert [s["id"] for s in results] == [mine.pk]
    assert results[0]["age_years"] == "3.50"


def test_it_serves_the_image_to_the_owner(api, patient):
    study = StudyFactory(patient=patient)
    response = api.get(reverse("api:study-image", args=[study.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == xray_bytes()
    assert response["Content-Type"] == "image/jpeg"
    assert "private" in response["Cache-Control"]


def test_it_hides_another_clinicians_image(api, foreign_patient):
    study = StudyFactory(patient=foreign_patient)
    assert api.get(reverse("api:study-image", args=[study.pk])).status_code == 404
    assert api.get(reverse("api:study-detail", args=[study.pk])).status_code == 404


def test_it_serves_images_to_reviewers(reviewer, foreign_patient):
    study = StudyFactory(patient=foreign_patient)
    assert api_client_for(reviewer).get(reverse("api:study-image", args=[study.pk])).status_code == 200


def test_it_requires_authentication_for_images(client, patient):
    study = StudyFactory(patient=patient)
    assert client.get(reverse("api:study-image", args=[study.pk])).status_code in (401, 403)


def test_it_has_no_public_media_url(client, patient, settings):
    study = StudyFactory(patient=patient)
    assert client.get("/media/" + study.image.name).status_code == 404
    assert settings.MEDIA_URL is None


def test_it_answers_a_foreign_and_a_nonexistent_patient_filter_alike(api, patient, foreign_patient):
    StudyFactory(patient=foreign_patient)
    foreign = api.get(reverse("api:study-list"), {"patient": foreign_patient.pk})
    missing = api.get(reverse("api:study-list"), {"patient": 999_999})
    assert foreign.status_code == missing.status_code == 200
    assert foreign.json() == missing.json() and foreign.json()["count"] == 0


@pytest.mark.parametrize("params", [{"view": "XYZ"}, {"patient": "abc"}])
def test_it_refuses_a_filter_value_it_does_not_know(api, params):
    response = api.get(reverse("api:study-list"), params)
    assert response.status_code == 400 and set(response.json()) == set(params)


def test_it_serves_images_with_no_store(api, patient):
    study = StudyFactory(patient=patient)
    assert "no-store" in api.get(reverse("api:study-image", args=[study.pk]))["Cache-Control"]


def test_it_answers_409_and_sends_nothing_when_the_image_is_not_the_one_stored(clinician, patient, caplog):
    study = StudyFactory(patient=patient)
    tampered = tamper_with(study.image)
    response = api_client_for(clinician).get(reverse("api:study-image", args=[study.pk]))
    assert response.status_code == 409 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "This file failed its integrity check: it is not the file that was stored. "
                                         "An administrator has been told."}
    assert tampered not in response.content and "no-store" in response["Cache-Control"]
    assert any(r.levelname == "ERROR" and study.image.name in r.getMessage() for r in caplog.records)
    [entry] = integrity_failures()
    assert (entry.content_type.model, entry.object_pk, entry.actor) == ("study", str(study.pk), clinician)
    assert entry.additional_data["expected"] == study.image_sha256


def test_it_answers_404_when_the_image_file_is_gone(api, patient):
    study = StudyFactory(patient=patient)
    study.image.delete(save=False)
    assert api.get(reverse("api:study-image", args=[study.pk])).status_code == 404
