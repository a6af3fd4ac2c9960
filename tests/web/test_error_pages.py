"""The 404 and 500 pages people see, and the favicon.

This module is also the URL configuration of its tests (``pytest.mark.urls``): the site's own
patterns and error handlers, plus a page that fails.
"""

import logging

import pytest
from django.contrib.staticfiles import finders
from django.urls import path, reverse

from pneumoweb import urls as site_urls
from pneumoweb.urls import handler400, handler403, handler404, handler500  # noqa: F401  (this urlconf's handlers)


def broken_page(request):
    raise RuntimeError("a bug in a page")


urlpatterns = [path("broken/", broken_page), *site_urls.urlpatterns]


@pytest.fixture
def quiet_client(client):
    # The exception ends as the 500 page (as in production), not raised into the test.
    client.raise_request_exception = False
    return client


@pytest.mark.django_db
def test_it_shows_the_styled_404_page_to_people(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Page not found" in page and "/no-such-page/" in page
    assert 'href="/static/css/app.css"' in page and 'class="topbar"' in page  # base.html's look
    assert "decision support, not a diagnosis" in page
    assert [t.name for t in response.templates][:2] == ["404.html", "base.html"]


def test_it_shows_the_worklist_menu_on_the_404_page_to_a_signed_in_user(logged_in):
    page = logged_in.get("/patients/no-such-thing/").content.decode()
    assert "Page not found" in page and reverse("patient_list") in page and "Log out" in page


def test_it_answers_a_missing_record_with_the_styled_page(logged_in):
    response = logged_in.get(reverse("patient_detail", args=[987654]))
    assert response.status_code == 404 and "Page not found" in response.content.decode()


def test_it_answers_json_404_to_a_client_that_asks_for_json(client, db):
    response = client.get("/no-such-page/", HTTP_ACCEPT="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


@pytest.mark.urls(__name__)
def test_it_shows_the_static_500_page_without_the_database_or_the_user(quiet_client, caplog):
    # No `db` fixture: any database query while answering would fail the test.
    with caplog.at_level(logging.ERROR):
        response = quiet_client.get("/broken/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Something went wrong" in page and "has been logged" in page
    assert 'href="/static/css/app.css"' in page and 'class="topbar"' in page
    assert "a bug in a page" not in page and "Traceback" not in page  # nothing of the error shown
    assert response["Cache-Control"] and "no-store" in response["Cache-Control"]
    assert "default-src 'self'" in response["Content-Security-Policy"]
    # Logged once, by Django, with the traceback.
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].name == "django.request" and logged[0].exc_info


@pytest.mark.urls(__name__)
def test_it_answers_json_500_to_a_page_request_that_asks_for_json(quiet_client):
    response = quiet_client.get("/broken/", HTTP_ACCEPT="application/json")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert "Server error" in response.json()["detail"]


def test_it_serves_a_favicon_at_the_address_browsers_ask_for(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.png"
    with open(finders.find("favicon.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(finders.find("favicon.svg"), encoding="utf-8") as fh:
        assert fh.read().startswith("<svg")


@pytest.mark.django_db
def test_it_links_the_favicon_from_every_page(client):
    page = client.get(reverse("login")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in page and 'href="/static/favicon.png"' in page
