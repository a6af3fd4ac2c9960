import pytest
from django.urls import reverse

from diagnosis.models import Patient

from .factories import PatientFactory, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_it_creates_a_patient(logged_in, clinician):
    data = {"mrn": "P-77", "name": "Rosalind Franklin", "sex": "F", "date_of_birth": "1920-07-25"}
    response = logged_in.post(reverse("patient_create"), data)
    patient = Patient.objects.get(mrn="P-77")
    assert response.status_code == 302 and response["Location"] == patient.get_absolute_url()
    assert patient.owner == clinician


def test_it_shows_patient_form_errors_inline(logged_in, patient):
    response = logged_in.post(reverse("patient_create"), {"mrn": patient.mrn, "name": "", "sex": "Q", "date_of_birth": "soon"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "You already have a patient with this MRN." in html
    assert "This field is required." in html
    assert "Enter a valid date." in html
    assert Patient.objects.count() == 1


def test_it_searches_patients_by_name_and_mrn(logged_in, clinician):
    PatientFactory(owner=clinician, name="Marie Curie", mrn="C-1")
    PatientFactory(owner=clinician, name="Lise Meitner", mrn="M-9")
    html = logged_in.get(reverse("patient_list"), {"q": "curie"}).content.decode()
    assert "Marie Curie" in html and "Lise Meitner" not in html
    html = logged_in.get(reverse("patient_list"), {"q": "M-9"}).content.decode()
    assert "Lise Meitner" in html and "Marie Curie" not in html
    assert "No patient matches" in logged_in.get(reverse("patient_list"), {"q": "nobody"}).content.decode()


def test_it_paginates_the_patient_list(logged_in, clinician):
    for _ in range(30):
        PatientFactory(owner=clinician)
    response = logged_in.get(reverse("patient_list"), {"page": 2})
    assert len(response.context["page"].object_list) == 5
    assert "Page 2 of 2" in response.content.decode()


def test_it_shows_the_study_history(logged_in, patient):
    done = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    failed = PredictionFactory(study=StudyFactory(patient=patient), status="failed", error="boom")
    html = logged_in.get(patient.get_absolute_url()).content.decode()
    for prediction in (done, failed):
        assert reverse("prediction_detail", args=[prediction.pk]) in html
        assert reverse("study_thumbnail", args=[prediction.study_id]) in html
    assert "PNEUMONIA" in html and "91.0%" in html and "badge-failed" in html
    assert f"{reverse('upload')}?patient={patient.pk}" in html


def test_it_offers_no_upload_button_to_a_reviewer(client, reviewer, patient):
    from .factories import PASSWORD

    client.login(username=reviewer.username, password=PASSWORD)
    html = client.get(patient.get_absolute_url()).content.decode()
    assert "Upload X-ray" not in html
