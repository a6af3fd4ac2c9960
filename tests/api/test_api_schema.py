import pytest

pytestmark = pytest.mark.django_db


def test_it_serves_the_openapi_schema_to_authenticated_clients(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/predict/" in schema["paths"]
    assert "/api/predictions/{id}/" in schema["paths"]
    assert "202" in schema["paths"]["/api/predict/"]["post"]["responses"]


def test_it_hides_the_schema_from_anonymous_users(client):
    assert client.get("/api/schema/").status_code in (401, 403)
    assert client.get("/api/docs/").status_code in (401, 403)


def test_it_serves_interactive_docs_from_local_static_files(logged_in):
    response = logged_in.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "unpkg" not in html


def test_it_documents_a_429_on_every_throttled_operation_and_only_there(api):
    paths = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    throttled = {path for path, operations in paths.items()
                 if any("429" in operation["responses"] for operation in operations.values())}
    assert throttled == {"/api/predict/", "/api/predict/batch/", "/api/auth/token/"}
