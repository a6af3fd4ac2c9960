import datetime

import pytest
from django.test import Client
from django.urls import reverse

from diagnosis.models import Patient

from ..factories import PASSWORD, PatientFactory

pytestmark = pytest.mark.django_db

URL = reverse("patient_create")
VALID = {"mrn": "P-77", "name": "Rosalind Franklin", "sex": "F", "date_of_birth": "1920-07-25"}


def test_it_requires_login(client):
    assert client.get(URL)["Location"].startswith(reverse("login"))
    response = client.post(URL, VALID)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Patient.objects.exists()


def test_it_shows_the_form(logged_in):
    response = logged_in.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for field in ("id_mrn", "id_name", "id_sex", "id_date_of_birth"):
        assert f'id="{field}"' in html, field
    assert 'type="date"' in html
    assert 'data-testid="patient-submit"' in html
    assert "csrfmiddlewaretoken" in html


def test_it_creates_a_patient(logged_in, clinician):
    response = logged_in.post(URL, VALID)
    patient = Patient.objects.get(mrn="P-77")
    assert response.status_code == 302 and response["Location"] == patient.get_absolute_url()
    assert patient.owner == clinician
    assert patient.name == "Rosalind Franklin" and patient.sex == "F"
    assert patient.date_of_birth == datetime.date(1920, 7, 25)
    page = logged_in.get(response["Location"]).content.decode()
    assert "Patient Rosalind Franklin (P-77) created." in page  # the message is shown once


def test_it_allows_an_empty_date_of_birth(logged_in):
    logged_in.post(URL, {**VALID, "date_of_birth": ""})
    assert Patient.objects.get().date_of_birth is None


def test_it_strips_the_mrn(logged_in):
    logged_in.post(URL, {**VALID, "mrn": "  P-77  "})
    assert Patient.objects.get().mrn == "P-77"


def test_it_shows_errors_inline_and_saves_nothing(logged_in):
    response = logged_in.post(URL, {"mrn": "", "name": "", "sex": "Q", "date_of_birth": "soon"})
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {"mrn", "name", "sex", "date_of_birth"}
    html = response.content.decode()
    assert html.count("This field is required.") == 2
    assert "Select a valid choice. Q is not one of the available choices." in html
    assert "Enter a valid date." in html
    assert html.count('class="field has-error"') == 4
    assert not Patient.objects.exists()


def test_it_refuses_a_duplicate_mrn_of_the_same_clinician(logged_in, patient):
    response = logged_in.post(URL, {**VALID, "mrn": patient.mrn})
    assert response.status_code == 200
    assert "You already have a patient with this MRN." in response.content.decode()
    assert Patient.objects.count() == 1


def test_it_allows_the_same_mrn_for_another_clinician(logged_in, clinician, foreign_patient):
    response = logged_in.post(URL, {**VALID, "mrn": foreign_patient.mrn})
    assert response.status_code == 302
    assert Patient.objects.filter(mrn=foreign_patient.mrn).count() == 2
    assert Patient.objects.get(mrn=foreign_patient.mrn, owner=clinician).name == "Rosalind Franklin"


def test_it_ignores_an_owner_in_the_post(logged_in, clinician, other_clinician):
    logged_in.post(URL, {**VALID, "owner": other_clinician.pk})
    assert Patient.objects.get().owner == clinician


def test_it_enforces_csrf(clinician):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    assert client.post(URL, VALID).status_code == 403
    assert not Patient.objects.exists()


def test_it_answers_a_concurrent_duplicate_mrn_with_a_form_error(logged_in, clinician, monkeypatch):
    from diagnosis.forms import PatientForm

    monkeypatch.setattr(PatientForm, "clean_mrn", lambda self: self.cleaned_data["mrn"])  # the race, as above
    PatientFactory(owner=clinician, mrn="RACE-2")
    response = logged_in.post(reverse("patient_create"), {"mrn": "RACE-2", "name": "Ada", "sex": "F"})
    assert response.status_code == 200
    assert "You already have a patient with this MRN." in response.content.decode()
