"""POST /api/predict/batch/: several X-rays of one patient, each its own study and prediction with its own errors."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import Patient, Prediction, Study

from ..base import throttle_rates
from ..factories import xray_bytes

pytestmark = pytest.mark.django_db
URL = reverse("api:predict-batch")


def files(*names):
    out = []
    for name in names:
        data = b"not an image at all" if name.startswith("junk") else xray_bytes(name)
        out.append(SimpleUploadedFile(name, data, "image/jpeg"))
    return out


def test_each_file_becomes_its_own_study_and_a_bad_one_is_refused_alone(api, patient, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, {"images": files("normal-1.jpeg", "junk.jpg", "pneumonia-1.jpeg"), "age": "4",
                                  "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert [a["file"] for a in body["accepted"]] == ["normal-1.jpeg", "pneumonia-1.jpeg"]
    assert body["refused"] == [{"file": "junk.jpg", "errors": ["File is not a JPEG, PNG or DICOM image."]}]
    assert Study.objects.filter(patient=patient).count() == 2
    assert {p.status for p in Prediction.objects.all()} == {"succeeded"}  # eager jobs in tests
    assert body["patient"] == patient.pk


def test_a_new_patient_is_created_once_for_the_whole_batch(api, clinician):
    response = api.post(URL, {"images": files("normal-1.jpeg", "normal-2.jpeg"), "age": "40", "patient_mrn": "B-1",
                              "patient_name": "Batch Patient"}, format="multipart")
    assert response.status_code == 202
    patient = Patient.objects.get(owner=clinician, mrn="B-1")
    assert patient.studies.count() == 2


def test_it_answers_400_and_saves_nothing_when_no_file_is_accepted(api, patient, settings):
    response = api.post(URL, {"images": files("junk-1.jpg", "junk-2.jpg"), "age": "4", "patient": patient.pk},
                        format="multipart")
    assert response.status_code == 400
    assert response.json()["images"] == ["junk-1.jpg: File is not a JPEG, PNG or DICOM image.",
                                         "junk-2.jpg: File is not a JPEG, PNG or DICOM image."]
    assert not Study.objects.exists()


def test_it_limits_the_number_of_files(api, patient, settings):
    settings.PNEUMOWEB_MAX_BATCH_FILES = 2
    response = api.post(URL, {"images": files("normal-1.jpeg", "normal-2.jpeg", "pneumonia-1.jpeg"), "age": "4",
                              "patient": patient.pk}, format="multipart")
    assert response.status_code == 400 and response.json()["images"] == ["3 files: upload at most 2 at once."]
    assert not Study.objects.exists()


def test_it_counts_against_the_upload_rate_limit(api, patient):
    with throttle_rates(predict="1/min"):
        first = api.post(URL, {"images": files("normal-1.jpeg"), "age": "4", "patient": patient.pk}, format="multipart")
        second = api.post(URL, {"images": files("normal-1.jpeg"), "age": "4", "patient": patient.pk}, format="multipart")
    assert (first.status_code, second.status_code) == (202, 429)


def test_one_empty_file_is_refused_alone_and_named(api, patient):
    empty = SimpleUploadedFile("empty.jpg", b"", "image/jpeg")
    response = api.post(URL, {"images": [*files("normal-1.jpeg"), empty, *files("pneumonia-1.jpeg")], "age": "4",
                              "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert [a["file"] for a in body["accepted"]] == ["normal-1.jpeg", "pneumonia-1.jpeg"]
    assert body["refused"] == [{"file": "empty.jpg", "errors": ["The submitted file is empty."]}]


def test_a_batch_naming_an_mrn_with_another_name_is_a_409(api, patient, settings):
    response = api.post(URL, {"images": files("normal-1.jpeg", "normal-2.jpeg"), "age": "4",
                              "patient_mrn": patient.mrn, "patient_name": "Someone Else"}, format="multipart")
    assert response.status_code == 409
    assert "Someone Else" in response.json()["detail"] and not Study.objects.exists()
