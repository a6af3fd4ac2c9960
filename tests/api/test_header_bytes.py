"""A header whose bytes are not UTF-8 is a client error, never a 500 (issue 20, item 7).

WSGI gives header values as Latin-1 text, so the test client's ``"\\xff"`` is the byte 0xFF on the
wire, exactly what gunicorn hands over for such a header.
"""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

NOT_UTF8 = "Token \xff\xfe\xc3("  # 0xFF 0xFE and a truncated two-byte sequence


def test_it_answers_401_json_for_a_token_that_is_not_utf8():
    response = APIClient().get("/api/patients/", HTTP_AUTHORIZATION=NOT_UTF8)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "Authorization header is not valid UTF-8" in response.json()["detail"]


def test_it_answers_401_on_the_token_endpoint_too():
    response = APIClient().post("/api/auth/token/", {}, HTTP_AUTHORIZATION="Basic \xff\xff")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_it_answers_400_json_for_any_other_header(api):
    response = api.get("/api/patients/", HTTP_ACCEPT_LANGUAGE="\xe9\xff")
    assert response.status_code == 400
    assert "Accept-Language header is not valid UTF-8" in response.json()["detail"]


def test_it_answers_400_on_pages_without_a_server_error(client):
    response = client.get("/", HTTP_USER_AGENT="probe \xff")
    assert response.status_code == 400
    assert "not valid UTF-8" in response.content.decode()


def test_it_lets_utf8_and_ascii_headers_through(api):
    # "é" sent as UTF-8 bytes arrives as the Latin-1 text "Ã©": valid, so it passes.
    response = api.get("/api/patients/", HTTP_USER_AGENT="caf\xc3\xa9 client", HTTP_X_NOTE="plain")
    assert response.status_code == 200
