"""The two authenticated image views: the stored X-ray and its thumbnail."""

import io

import pytest
from django.urls import reverse
from PIL import Image

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
    study = StudyFactory(patient=patient)
    study.image.save("wide.png", io.BytesIO(buffer.getvalue()))
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
