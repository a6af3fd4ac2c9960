"""Impossible birth dates (in the future, or more than 130 years ago) are refused on the page, the API and
the admin, and a DICOM header's is noted, not trusted; the upload never contradicts the record (issue 29 §2)."""

import datetime

import pytest
from django.utils import timezone

from diagnosis.images import check_upload, study_fields
from diagnosis.models import Patient, Study, birth_date_problem

from ..base import api_client_for, make_admin, signed_in_client
from ..factories import PatientFactory, xray_bytes

pytestmark = pytest.mark.django_db
FUTURE = "2099-01-01"
ANCIENT = "1850-06-01"


def test_the_rule():
    today = datetime.date(2026, 12, 7)
    assert birth_date_problem(datetime.date(2099, 1, 1), today).startswith("A birth date cannot be in the future")
    assert "more than 130 years ago" in birth_date_problem(datetime.date(1850, 6, 1), today)
    assert birth_date_problem(datetime.date(1900, 1, 1), today) == ""
    assert birth_date_problem(today, today) == "" and birth_date_problem(None, today) == ""


@pytest.mark.parametrize("born, words", [(FUTURE, "cannot be in the future"), (ANCIENT, "more than 130 years ago")])
def test_the_patient_page_refuses_it_with_a_form_error(logged_in, born, words):
    response = logged_in.post("/patients/new/", {"mrn": "P-1", "name": "Ada", "sex": "F", "date_of_birth": born})
    assert response.status_code == 200 and words in response.content.decode()
    assert not Patient.objects.exists()


@pytest.mark.parametrize("born", [FUTURE, ANCIENT])
def test_the_api_refuses_it_on_the_patient_and_on_an_upload_and_saves_nothing(clinician, xray_upload, born):
    api = api_client_for(clinician)
    response = api.post("/api/patients/", {"mrn": "A-1", "name": "Ada", "date_of_birth": born}, format="json")
    assert response.status_code == 400 and "birth date" in response.json()["date_of_birth"][0]
    upload = api.post("/api/predict/", {"image": xray_upload(), "patient_mrn": "A-2", "patient_name": "Ada",
                                        "patient_date_of_birth": born}, format="multipart")
    assert upload.status_code == 400 and "birth date" in upload.json()["patient_date_of_birth"][0]
    assert not Patient.objects.exists() and not Study.objects.exists()


def test_the_admin_refuses_it():
    client = signed_in_client(make_admin())
    patient = PatientFactory(date_of_birth=datetime.date(2001, 2, 3))
    response = client.post(f"/admin/diagnosis/patient/{patient.pk}/change/",
                           {"mrn": patient.mrn, "name": patient.name, "sex": "U", "date_of_birth": FUTURE,
                            "owner": patient.owner_id})
    assert response.status_code == 200 and "cannot be in the future" in response.content.decode()
    patient.refresh_from_db()
    assert patient.date_of_birth == datetime.date(2001, 2, 3)


def test_a_dicom_birth_date_in_the_future_is_noted_not_trusted():
    from pacs.ingest import receive
    from tests.dicom_files import chest

    received = receive(chest(birth_date="20990101", age=""), received_from="C-STORE from ORTHANC").instance
    patient = received.imaging_study.patient
    assert patient.date_of_birth is None
    assert any(note.startswith("PatientBirthDate not used: A birth date cannot be in the future") for note in received.notes)


def test_a_record_kept_with_a_birth_date_after_the_study_is_named_not_denied():
    from django.core.files.uploadedfile import SimpleUploadedFile

    checked = check_upload(SimpleUploadedFile("x.jpeg", xray_bytes("normal-1.jpeg"), "image/jpeg"))
    later = timezone.localdate() + datetime.timedelta(days=30)
    age, _, notes = study_fields(checked, age=None, view="PA", date_of_birth=later)
    assert age is None
    assert any(f"the birth date on record ({later}) is after the study day" in note for note in notes)
    assert not any("no birth date on record" in note for note in notes)
