"""Every API query parameter takes one value: a repeated one is a 400, never silently the last."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query", ["page=1&page=2", "search=a&search=b", "status=queued&status=failed"])
def test_it_refuses_a_repeated_parameter(api, query):
    url = reverse("api:prediction-list" if "status" in query else "api:patient-list")
    response = api.get(f"{url}?{query}")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Give each query parameter once:")


def test_it_takes_one_of_each(api, patient):
    response = api.get(reverse("api:patient-list") + "?page=1&search=" + patient.mrn)
    assert response.status_code == 200 and response.json()["count"] == 1


def test_pages_outside_the_api_are_not_concerned(logged_in):
    assert logged_in.get(reverse("patient_list") + "?page=1&page=1").status_code == 200


@pytest.mark.parametrize("value", ["+8", " 8", "8 ", "1e3"])
def test_it_refuses_a_number_written_otherwise_than_plainly(api, value):
    response = api.get(reverse("api:study-list"), {"patient": value})
    assert response.status_code == 400 and "plain number" in response.json()["patient"][0]


def test_it_takes_a_plain_number(api, patient):
    assert api.get(reverse("api:study-list"), {"patient": str(patient.pk)}).status_code == 200


@pytest.mark.parametrize("page", ["", "x", "-1", "1.5"])
def test_it_refuses_a_page_it_cannot_read(api, page):
    response = api.get(reverse("api:patient-list"), {"page": page})
    assert response.status_code == 400 and "page number" in response.json()["page"][0]
