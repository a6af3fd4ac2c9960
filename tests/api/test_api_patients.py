import pytest
from django.urls import reverse

from diagnosis.models import Patient

from ..base import api_client_for
from ..factories import PatientFactory

pytestmark = pytest.mark.django_db

LIST = reverse("api:patient-list")


def test_it_creates_a_patient_owned_by_the_caller(api, clinician):
    response = api.post(LIST, {"mrn": "A-1", "name": "Grace Hopper", "sex": "F", "date_of_birth": "1906-12-09"}, format="json")
    assert response.status_code == 201, response.content
    patient = Patient.objects.get(mrn="A-1")
    assert patient.owner == clinician
    assert response.json()["owner"] == clinician.username


def test_it_rejects_a_duplicate_mrn_for_the_same_clinician(api, patient):
    response = api.post(LIST, {"mrn": patient.mrn, "name": "Someone"}, format="json")
    assert response.status_code == 400
    assert "mrn" in response.json()


def test_it_allows_the_same_mrn_for_different_clinicians(api, foreign_patient):
    assert api.post(LIST, {"mrn": foreign_patient.mrn, "name": "Other"}, format="json").status_code == 201


def test_it_rejects_bad_fields(api):
    response = api.post(LIST, {"mrn": "", "name": "", "sex": "Z", "date_of_birth": "yesterday"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"mrn", "name", "sex", "date_of_birth"}


def test_it_lists_and_searches_own_patients_only(api, clinician, foreign_patient):
    PatientFactory(owner=clinician, name="Alan Turing", mrn="T-1")
    PatientFactory(owner=clinician, name="Barbara Liskov", mrn="L-1")
    names = [p["name"] for p in api.get(LIST).json()["results"]]
    assert foreign_patient.name not in names and len(names) == 2
    assert [p["name"] for p in api.get(LIST, {"search": "turing"}).json()["results"]] == ["Alan Turing"]


def test_it_hides_another_clinicians_patient(api, foreign_patient):
    assert api.get(reverse("api:patient-detail", args=[foreign_patient.pk])).status_code == 404
    response = api.patch(reverse("api:patient-detail", args=[foreign_patient.pk]), {"name": "X"}, format="json")
    assert response.status_code == 404


def test_it_lets_the_owner_update(api, patient):
    response = api.patch(reverse("api:patient-detail", args=[patient.pk]), {"name": "New Name"}, format="json")
    assert response.status_code == 200
    patient.refresh_from_db()
    assert patient.name == "New Name"


def test_it_lets_a_reviewer_read_but_not_edit(reviewer, patient):
    client = api_client_for(reviewer)
    url = reverse("api:patient-detail", args=[patient.pk])
    assert client.get(url).status_code == 200
    assert client.patch(url, {"name": "X"}, format="json").status_code == 403


def test_it_does_not_delete_patients(api, patient):
    assert api.delete(reverse("api:patient-detail", args=[patient.pk])).status_code == 405


@pytest.mark.parametrize("field, value", [("mrn", 12345), ("name", ["a"]), ("mrn", True)])
def test_it_refuses_a_non_string_for_a_text_field(api, field, value):
    data = {"mrn": "M-9", "name": "Ada", field: value}
    response = api.post(LIST, data, format="json")
    assert response.status_code == 400 and response.json()[field] == ["Not a valid string."]


def test_it_answers_a_concurrent_duplicate_mrn_with_a_400(api, clinician, monkeypatch):
    # The race: another request saves the same MRN after this one checked and before it inserts.
    from diagnosis.api.serializers import PatientSerializer

    monkeypatch.setattr(PatientSerializer, "validate_mrn", lambda self, value: value)
    PatientFactory(owner=clinician, mrn="RACE-1")
    response = api.post(LIST, {"mrn": "RACE-1", "name": "Ada"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"mrn": ["You already have a patient with this MRN."]}


def test_it_refuses_a_nul_character_in_the_search(api):
    assert api.get(LIST, {"search": "a\x00b"}).status_code == 400


def test_it_takes_patient_records_as_json_only(api):
    response = api.post(LIST, {"mrn": "F-1", "name": "Form Data"}, format="multipart")
    assert response.status_code == 415
    assert not Patient.objects.filter(mrn="F-1").exists()

