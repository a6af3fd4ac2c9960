"""Idempotency-Key on POST /api/predict/ and /api/predict/batch/: retries never make a second study."""

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis.jobs.dispatch import reconcile
from diagnosis.models import IdempotentRequest, Prediction, Study

pytestmark = pytest.mark.django_db

PREDICT, BATCH = reverse("api:predict"), reverse("api:predict-batch")


def post(api, xray_upload, patient, key, url=PREDICT, age="3", **extra):
    data = {"age": age, "patient": patient.pk, **extra}
    if url == BATCH:
        data["images"] = [xray_upload("normal-1.jpeg"), xray_upload("pneumonia-1.jpeg")]
    else:
        data["image"] = xray_upload("normal-1.jpeg")
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post(url, data, format="multipart", **headers)


def test_it_answers_a_retry_with_the_first_answer_and_no_new_study(api, patient, xray_upload):
    first = post(api, xray_upload, patient, "retry-1")
    again = post(api, xray_upload, patient, "retry-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Study.objects.count() == 1 and Prediction.objects.count() == 1


def test_it_refuses_the_same_key_for_another_request_with_422(api, patient, xray_upload):
    assert post(api, xray_upload, patient, "k-2").status_code == 202
    other = post(api, xray_upload, patient, "k-2", age="4")
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    assert Study.objects.count() == 1


def test_it_answers_409_while_the_first_request_is_still_being_handled(api, patient, xray_upload):
    first = post(api, xray_upload, patient, "busy")
    # As it stands while the first request is still running: claimed, no answer yet.
    IdempotentRequest.objects.filter(key="busy").update(status_code=None, response=None)
    second = post(api, xray_upload, patient, "busy")
    assert first.status_code == 202 and second.status_code == 409
    assert "still being handled" in second.json()["detail"] and Study.objects.count() == 1


def test_a_refused_request_does_not_use_up_its_key(api, patient, xray_upload):
    refused = post(api, xray_upload, patient, "fix-me", age="999")
    assert refused.status_code == 400 and not IdempotentRequest.objects.exists()
    assert post(api, xray_upload, patient, "fix-me").status_code == 202


def test_keys_belong_to_their_user(api, patient, xray_upload, other_clinician):
    from ..base import api_client_for
    from ..factories import PatientFactory

    assert post(api, xray_upload, patient, "shared-key").status_code == 202
    theirs = PatientFactory(owner=other_clinician)
    assert post(api_client_for(other_clinician), xray_upload, theirs, "shared-key").status_code == 202
    assert Study.objects.count() == 2


def test_it_works_for_a_batch_too(api, patient, xray_upload):
    first, again = post(api, xray_upload, patient, "b-1", url=BATCH), post(api, xray_upload, patient, "b-1", url=BATCH)
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert Study.objects.count() == 2
    assert post(api, xray_upload, patient, "b-1").status_code == 422  # the same key on the other endpoint


def test_it_refuses_a_key_that_is_not_printable_text(api, patient, xray_upload):
    response = post(api, xray_upload, patient, "x" * 256)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()
    assert not Study.objects.exists()


def test_the_reconciler_forgets_keys_past_their_time(api, patient, xray_upload, settings):
    assert post(api, xray_upload, patient, "old").status_code == 202
    IdempotentRequest.objects.update(created_at=timezone.now() - timezone.timedelta(
        hours=settings.PNEUMOWEB_IDEMPOTENCY_TTL_HOURS, minutes=1))
    assert reconcile()["idempotency_keys_forgotten"] == 1
    assert post(api, xray_upload, patient, "old").status_code == 202  # a new request under the old key
    assert Study.objects.count() == 2


def test_a_request_without_the_header_is_not_remembered(api, patient, xray_upload):
    assert post(api, xray_upload, patient, None).status_code == 202
    assert post(api, xray_upload, patient, None).status_code == 202
    assert Study.objects.count() == 2 and not IdempotentRequest.objects.exists()


def test_the_schema_documents_the_header(api):
    schema = api.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    for path in ("/api/predict/", "/api/predict/batch/"):
        operation = schema["paths"][path]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"])
        assert {"409", "422"} <= set(operation["responses"])
