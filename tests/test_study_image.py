import io

import pytest
from django.urls import reverse
from PIL import Image

from .factories import StudyFactory, xray_bytes

pytestmark = pytest.mark.django_db


def test_it_serves_the_original_image_to_its_owner(logged_in, patient):
    study = StudyFactory(patient=patient)
    response = logged_in.get(reverse("study_image", args=[study.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == xray_bytes()
    assert "private" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_serves_a_small_png_thumbnail(logged_in, patient):
    study = StudyFactory(patient=patient)
    response = logged_in.get(reverse("study_thumbnail", args=[study.pk]))
    assert response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert max(image.size) <= 160


def test_it_answers_404_when_the_file_is_gone(logged_in, patient):
    study = StudyFactory(patient=patient)
    study.image.delete(save=False)
    assert logged_in.get(reverse("study_image", args=[study.pk])).status_code == 404
    assert logged_in.get(reverse("study_thumbnail", args=[study.pk])).status_code == 404
