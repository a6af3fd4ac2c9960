"""Under /api/ every error is JSON ``{"detail": ...}``, whatever its status, 500 included.

DRF answers the errors it knows (400, 401, 403, 404, 405, 429) itself; what escapes a view,
or never reaches one, ends in the site's handlers (pneumoweb/urls.py → core/views.py). This
module is also the URL configuration of the tests that need a failing endpoint.
"""

import logging

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from pneumoweb import urls as site_urls
from pneumoweb.urls import handler400, handler403, handler404, handler500  # noqa: F401  (this urlconf's handlers)

pytestmark = pytest.mark.django_db


class BrokenEndpoint(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("a bug in an endpoint")


class FineEndpoint(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


def forbidden_plain_view(request):
    raise PermissionDenied


urlpatterns = [
    path("api/test/broken/", BrokenEndpoint.as_view()),
    path("api/test/fine/", FineEndpoint.as_view()),
    path("api/test/forbidden/", forbidden_plain_view),
    *site_urls.urlpatterns,
]


@pytest.fixture
def quiet(client):
    client.raise_request_exception = False  # as in production: the handler answers, nothing is raised
    return client


@pytest.mark.urls(__name__)
def test_it_answers_an_unhandled_exception_in_a_drf_view_with_json_500(quiet, caplog, settings):
    assert settings.DEBUG is False
    with caplog.at_level(logging.ERROR):
        response = quiet.get("/api/test/broken/")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"} and "Server error" in body["detail"]
    assert "a bug in an endpoint" not in response.content.decode()  # no internals leak
    assert "no-store" in response["Cache-Control"]
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].name == "django.request"  # Django's log line, not a second one
    assert "a bug in an endpoint" in str(logged[0].exc_info[1])


@pytest.mark.urls(__name__)
def test_it_answers_json_500_with_the_browsers_accept_header_too(quiet):
    response = quiet.get("/api/test/broken/", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 500 and response.json()["detail"].startswith("Server error")


@pytest.mark.urls(__name__)
def test_it_still_serves_working_endpoints_under_the_test_urlconf(quiet):
    assert quiet.get("/api/test/fine/").json() == {"ok": True}


def test_it_answers_json_404_for_an_unknown_api_address(client):
    response = client.get("/api/no-such-endpoint/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_it_answers_json_404_for_an_unknown_record(api):
    response = api.get("/api/predictions/987654/")
    assert response.status_code == 404 and "detail" in response.json()


def test_it_answers_json_401_without_credentials(client):
    response = client.get("/api/patients/")
    assert response.status_code == 401 and "detail" in response.json()


def test_it_answers_json_405_for_a_method_an_endpoint_lacks(api):
    response = api.delete("/api/patients/")
    assert response.status_code == 405 and "detail" in response.json()


def test_it_answers_json_400_for_a_request_to_an_unknown_host(client):
    # DisallowedHost is raised before any view (CommonMiddleware): handler400 answers it.
    response = client.get("/api/patients/", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response.json() == {"detail": "Bad request."}


def test_it_keeps_a_page_for_a_bad_request_outside_the_api(client):
    response = client.get("/patients/", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
def test_it_answers_json_403_for_a_refusal_raised_outside_drf(quiet):
    response = quiet.get("/api/test/forbidden/")
    assert response.status_code == 403 and "permission" in response.json()["detail"]
