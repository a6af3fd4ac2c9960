import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

ORIGIN = "https://ris.example-hospital.org"


def test_it_allows_no_origin_by_default(api):
    response = api.get(reverse("api:prediction-list"), HTTP_ORIGIN=ORIGIN)
    assert "access-control-allow-origin" not in response.headers


def test_it_allows_origins_from_the_allow_list(api, settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    response = api.get(reverse("api:prediction-list"), HTTP_ORIGIN=ORIGIN)
    assert response.headers["access-control-allow-origin"] == ORIGIN
    other = api.get(reverse("api:prediction-list"), HTTP_ORIGIN="https://evil.example")
    assert "access-control-allow-origin" not in other.headers
