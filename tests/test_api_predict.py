import pytest
from django.urls import reverse

from diagnosis.models import Patient, Prediction, Study

pytestmark = pytest.mark.django_db

URL = reverse("api:predict")


def test_it_accepts_an_xray_and_returns_202_with_a_url_to_poll(api, patient, xray_upload, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(URL, {"image": xray_upload(), "age": "3.5", "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"] == body["url"]
    assert body["url"].endswith(f"/api/predictions/{body['id']}/")
    assert len(callbacks) == 1
    prediction = Prediction.objects.get(pk=body["id"])
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert 0.0 <= prediction.probability <= 1.0
    assert prediction.label in {"PNEUMONIA", "NORMAL"}
    assert len(prediction.model_sha256) == 64
