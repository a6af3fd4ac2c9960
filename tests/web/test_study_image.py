"""The two authenticated image views: the stored X-ray and its thumbnail."""

import hashlib
import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from ..base import integrity_failures, tamper_with
from ..factories import StudyFactory, xray_bytes

pytestmark = pytest.mark.django_db

VIEWS = ["study_image", "study_thumbnail"]


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("view", VIEWS)
def test_it_requires_login(client, patient, view):
    study = StudyFactory(patient=patient)
    response = client.get(reverse(view, args=[study.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_serves_the_original_image_to_its_owner(logged_in, patient):
    study = StudyFactory(patient=patient)
    response = logged_in.get(reverse("study_image", args=[study.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert body(response) == xray_bytes()
    assert "private" in response["Cache-Control"] and "public" not in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_serves_a_small_png_thumbnail(logged_in, patient):
    study = StudyFactory(patient=patient)
    response = logged_in.get(reverse("study_thumbnail", args=[study.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "private" in response["Cache-Control"]
    image = Image.open(io.BytesIO(body(response)))
    assert image.format == "PNG" and max(image.size) <= 160


def test_it_keeps_the_aspect_ratio_of_the_thumbnail(logged_in, patient):
    buffer = io.BytesIO()
    Image.new("L", (640, 320), 128).save(buffer, format="PNG")
    study = StudyFactory(patient=patient, image=ContentFile(buffer.getvalue(), name="wide.png"))
    response = logged_in.get(reverse("study_thumbnail", args=[study.pk]))
    assert Image.open(io.BytesIO(body(response))).size == (160, 80)
    original = logged_in.get(reverse("study_image", args=[study.pk]))
    assert original["Content-Type"] == "image/png"


@pytest.mark.parametrize("view", VIEWS)
def test_it_answers_404_for_another_clinicians_study(logged_in, foreign_patient, view):
    study = StudyFactory(patient=foreign_patient)
    response = logged_in.get(reverse(view, args=[study.pk]))
    assert response.status_code == 404
    assert xray_bytes() not in body(response)


@pytest.mark.parametrize("view", VIEWS)
def test_it_answers_404_for_an_unknown_study(logged_in, view):
    assert logged_in.get(reverse(view, args=[987654])).status_code == 404


@pytest.mark.parametrize("view", VIEWS)
def test_it_serves_a_reviewer_anyones_study(reviewer_client, foreign_patient, view):
    study = StudyFactory(patient=foreign_patient)
    response = reviewer_client.get(reverse(view, args=[study.pk]))
    assert response.status_code == 200 and response["Content-Type"].startswith("image/")


@pytest.mark.parametrize("view", VIEWS)
def test_it_answers_404_when_the_file_is_gone(logged_in, patient, view):
    study = StudyFactory(patient=patient)
    study.image.delete(save=False)
    assert logged_in.get(reverse(view, args=[study.pk])).status_code == 404


def test_it_is_not_published_under_a_media_url(settings):
    assert settings.MEDIA_URL in (None, "")


@pytest.mark.parametrize("view", VIEWS)
def test_it_answers_409_and_sends_nothing_when_the_image_is_not_the_one_stored(logged_in, clinician, patient, view,
                                                                             caplog):
    study = StudyFactory(patient=patient)
    tampered = tamper_with(study.image)
    response = logged_in.get(reverse(view, args=[study.pk]), REMOTE_ADDR="10.9.8.7")
    assert response.status_code == 409
    page = body(response)
    assert tampered not in page and xray_bytes() not in page
    assert response["Content-Type"].startswith("text/html")
    assert b"This file failed its integrity check: it is not the file that was stored." in page
    assert [t.name for t in response.templates][:2] == ["409.html", "base.html"]
    assert "no-store" in response["Cache-Control"]
    actual = hashlib.sha256(tampered).hexdigest()
    [record] = [r for r in caplog.records if r.name == "diagnosis.integrity"]
    assert record.levelname == "ERROR"
    assert all(part in record.getMessage() for part in (study.image.name, study.image_sha256, actual, str(study.pk)))
    [entry] = integrity_failures()
    assert entry.content_type.model == "study" and entry.object_pk == str(study.pk)
    assert entry.actor == clinician and entry.remote_addr == "10.9.8.7"
    assert entry.additional_data == {"action": "integrity failure", "what": "image", "field": "image",
                                     "file": study.image.name, "expected": study.image_sha256, "actual": actual}


def test_it_answers_json_409_to_a_client_that_asks_for_json(logged_in, patient):
    study = StudyFactory(patient=patient)
    tamper_with(study.image)
    response = logged_in.get(reverse("study_image", args=[study.pk]), HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": "This file failed its integrity check: it is not the file that was stored. "
                                         "An administrator has been told."}
