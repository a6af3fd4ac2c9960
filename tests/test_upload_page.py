from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from diagnosis.models import Prediction, Study

from .factories import PASSWORD, xray_bytes

pytestmark = pytest.mark.django_db

URL = reverse("upload")


def assert_nothing_saved(settings):
    assert Study.objects.count() == 0 and Prediction.objects.count() == 0
    root = Path(settings.MEDIA_ROOT)
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_it_uploads_and_redirects_to_the_result(logged_in, patient, xray_upload, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(URL, {"patient": patient.pk, "age": "2.5", "image": xray_upload("pneumonia-1.jpeg"), "view": "AP"})
    prediction = Prediction.objects.get()
    assert response.status_code == 302 and response["Location"] == prediction.get_absolute_url()
    assert prediction.status == "succeeded"
    study = prediction.study
    assert study.view == "AP" and str(study.age_years) == "2.50" and study.uploaded_by == patient.owner
    page = logged_in.get(response["Location"]).content.decode()
    assert 'data-testid="prediction-label"' in page and prediction.label in page


def test_it_preselects_the_patient_from_the_query(logged_in, patient):
    response = logged_in.get(URL, {"patient": patient.pk})
    assert response.context["form"].initial["patient"] == patient
    assert "js/upload-preview.js" in response.content.decode()


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"image": None}, "image", "This field is required."),
        ({"age": ""}, "age", "This field is required."),
        ({"age": "-1"}, "age", "greater than or equal to 0"),
        ({"age": "130"}, "age", "less than or equal to 120"),
        ({"age": "old"}, "age", "Enter a number."),
    ],
)
def test_it_shows_bad_fields_as_form_errors(logged_in, patient, xray_upload, settings, changes, field, message):
    data = {"patient": patient.pk, "age": "3", "image": xray_upload(), "view": "PA", **changes}
    data = {k: v for k, v in data.items() if v is not None}
    response = logged_in.post(URL, data)
    assert response.status_code == 200
    assert any(message in e for e in response.context["form"].errors[field])
    assert message in response.content.decode() or message.replace("'", "&#x27;") in response.content.decode()
    assert_nothing_saved(settings)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"GIF89a not really", "not a JPEG or PNG"),
        (xray_bytes()[:3000], "truncated"),
    ],
)
def test_it_rejects_bad_image_bytes(logged_in, patient, xray_upload, settings, data, message):
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "image": xray_upload(data=data, filename="x.jpg"), "view": "PA"})
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["image"])
    assert_nothing_saved(settings)


def test_it_rejects_images_over_the_limits(logged_in, patient, xray_upload, settings):
    settings.PNEUMOWEB_MAX_UPLOAD_BYTES = 500
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "image": xray_upload(), "view": "PA"})
    assert "limit" in " ".join(response.context["form"].errors["image"])
    settings.PNEUMOWEB_MAX_UPLOAD_BYTES = 10**7
    settings.PNEUMOWEB_MAX_IMAGE_PIXELS = 1000
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "image": xray_upload(), "view": "PA"})
    assert "pixels" in " ".join(response.context["form"].errors["image"])
    assert_nothing_saved(settings)


def test_it_refuses_another_clinicians_patient(logged_in, foreign_patient, xray_upload, settings):
    response = logged_in.post(URL, {"patient": foreign_patient.pk, "age": "3", "image": xray_upload(), "view": "PA"})
    assert response.status_code == 200
    assert "patient" in response.context["form"].errors
    assert_nothing_saved(settings)


def test_it_enforces_csrf(clinician, patient, xray_upload, settings):
    client = Client(enforce_csrf_checks=True)
    client.login(username=clinician.username, password=PASSWORD)
    response = client.post(URL, {"patient": patient.pk, "age": "3", "image": xray_upload(), "view": "PA"})
    assert response.status_code == 403
    assert_nothing_saved(settings)
