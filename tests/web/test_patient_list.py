import pytest
from django.urls import reverse

from ..factories import PatientFactory

pytestmark = pytest.mark.django_db

URL = reverse("patient_list")


def test_it_requires_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_lists_own_patients_with_links(logged_in, patient):
    response = logged_in.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{patient.get_absolute_url()}"' in html
    assert patient.name in html and patient.mrn in html and "Female" in html
    assert f'href="{reverse("patient_create")}"' in html  # "New patient"
    assert 'name="q"' in html and 'method="get"' in html


def test_it_searches_by_name_and_mrn(logged_in, clinician):
    PatientFactory(owner=clinician, name="Marie Curie", mrn="C-1")
    PatientFactory(owner=clinician, name="Lise Meitner", mrn="M-9")
    response = logged_in.get(URL, {"q": "curie"})
    assert [p.name for p in response.context["page"].object_list] == ["Marie Curie"]
    assert 'value="curie"' in response.content.decode()  # the box keeps the query
    html = logged_in.get(URL, {"q": " m-9 "}).content.decode()
    assert "Lise Meitner" in html and "Marie Curie" not in html


def test_it_has_an_empty_state(logged_in):
    assert "No patients yet." in logged_in.get(URL).content.decode()
    assert "No patient matches “nobody”." in logged_in.get(URL, {"q": "nobody"}).content.decode()


def test_it_hides_another_clinicians_patients(logged_in, patient, foreign_patient):
    response = logged_in.get(URL)
    assert list(response.context["page"].object_list) == [patient]
    assert foreign_patient.name not in response.content.decode()
    # Not even when searched for by exact MRN or name.
    for q in (foreign_patient.mrn, foreign_patient.name):
        response = logged_in.get(URL, {"q": q})
        assert list(response.context["page"].object_list) == [], q
        assert foreign_patient.get_absolute_url() not in response.content.decode()


def test_it_shows_a_reviewer_everyones_patients(reviewer_client, patient, foreign_patient):
    response = reviewer_client.get(URL)
    assert set(response.context["page"].object_list) == {patient, foreign_patient}
    html = response.content.decode()
    assert patient.owner.username in html and foreign_patient.owner.username in html  # clinician column
    response = reviewer_client.get(URL, {"q": foreign_patient.mrn})
    assert list(response.context["page"].object_list) == [foreign_patient]


def test_it_paginates(logged_in, clinician):
    for _ in range(30):
        PatientFactory(owner=clinician)
    first = logged_in.get(URL)
    assert len(first.context["page"].object_list) == 25
    assert "Page 1 of 2" in first.content.decode() and 'href="?page=2"' in first.content.decode()
    second = logged_in.get(URL, {"page": 2})
    assert len(second.context["page"].object_list) == 5
    assert "Page 2 of 2" in second.content.decode() and 'href="?page=1"' in second.content.decode()


def test_it_keeps_the_query_in_pagination_links(logged_in, clinician):
    for i in range(30):
        PatientFactory(owner=clinician, name=f"Smith {i:02d}")
    PatientFactory(owner=clinician, name="Jones")
    response = logged_in.get(URL, {"q": "smith"})
    assert response.context["page"].paginator.count == 30
    assert 'href="?q=smith&amp;page=2"' in response.content.decode()
    page2 = logged_in.get(URL, {"q": "smith", "page": 2})
    assert 'href="?q=smith&amp;page=1"' in page2.content.decode()


def test_it_escapes_the_query_in_links(logged_in, clinician):
    for _ in range(26):
        PatientFactory(owner=clinician, name="A&B <x>")
    html = logged_in.get(URL, {"q": "A&B <x>"}).content.decode()
    assert 'href="?q=A%26B%20%3Cx%3E&amp;page=2"' in html
    assert "<x>" not in html


def test_it_tolerates_a_bad_page_number(logged_in, patient):
    for page in ("zzz", "999", "-1"):
        response = logged_in.get(URL, {"page": page})
        assert response.status_code == 200, page
        assert patient.name in response.content.decode()


def test_it_refuses_a_nul_character_in_the_search_with_a_400(logged_in, patient):
    response = logged_in.get(URL + "?q=%00")
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()
