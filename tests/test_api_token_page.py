import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from .factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("api_token")


def test_it_requires_login(client, clinician):
    assert client.get(URL)["Location"].startswith(reverse("login"))
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Token.objects.exists()


def test_it_says_when_there_is_no_token(logged_in, clinician):
    html = logged_in.get(URL).content.decode()
    assert "You have no API token." in html
    assert 'data-testid="token-create"' in html and "Create token" in html
    assert 'data-testid="token-revoke"' not in html
    assert not Token.objects.exists()  # looking does not create one


def test_it_shows_a_curl_example(logged_in):
    html = logged_in.get(URL).content.decode()
    assert 'curl -H "Authorization: Token YOUR_TOKEN"' in html
    assert "-F image=@chest.jpg -F age=4.5" in html
    assert "http://testserver/api/predict/" in html
    assert f'href="{reverse("api_docs")}"' in html


def test_it_creates_a_token_and_shows_it_once(logged_in, clinician):
    response = logged_in.post(URL, {"action": "create"})
    assert response.status_code == 200
    token = Token.objects.get(user=clinician)
    assert f'<pre class="token" data-testid="api-token">{token.key}</pre>' in response.content.decode()
    assert "A new API token was created." in response.content.decode()
    assert "no-store" in response["Cache-Control"]  # the secret is not kept in caches
    later = logged_in.get(URL).content.decode()
    assert token.key not in later
    assert "You have an API token" in later and "Regenerate token" in later and 'data-testid="token-revoke"' in later


def test_it_regenerates_the_token(logged_in, clinician):
    logged_in.post(URL, {"action": "create"})
    old = Token.objects.get(user=clinician).key
    response = logged_in.post(URL, {"action": "create"})
    new = Token.objects.get(user=clinician).key
    assert new != old and new in response.content.decode() and old not in response.content.decode()


def test_it_revokes_the_token(logged_in, clinician):
    logged_in.post(URL, {"action": "create"})
    response = logged_in.post(URL, {"action": "revoke"}, follow=True)
    assert response.redirect_chain == [(URL, 302)]
    assert "Your API token was revoked." in response.content.decode()
    assert not Token.objects.filter(user=clinician).exists()


def test_it_lets_the_new_token_call_the_api_until_revoked(logged_in, clinician):
    logged_in.post(URL, {"action": "create"})
    key = Token.objects.get(user=clinician).key
    api = Client()
    assert api.get(reverse("api:prediction-list"), HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    logged_in.post(URL, {"action": "revoke"})
    assert api.get(reverse("api:prediction-list"), HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_it_touches_only_the_users_own_token(logged_in, clinician, other_clinician):
    theirs = Token.objects.create(user=other_clinician)
    logged_in.post(URL, {"action": "create"})
    logged_in.post(URL, {"action": "revoke"})
    assert Token.objects.filter(pk=theirs.pk).exists()
    assert theirs.key not in logged_in.get(URL).content.decode()


def test_it_uses_post_forms_with_csrf(logged_in, clinician):
    Token.objects.create(user=clinician)
    html = logged_in.get(URL).content.decode()
    assert html.count('<form method="post">') == 2
    assert 'name="action" value="create"' in html and 'name="action" value="revoke"' in html
    assert html.count("csrfmiddlewaretoken") >= 3  # the two forms and the logout form


def test_it_enforces_csrf(clinician):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    assert client.post(URL, {"action": "create"}).status_code == 403
    assert not Token.objects.exists()


def test_it_refuses_other_methods(logged_in):
    assert logged_in.put(URL).status_code == 405
    assert logged_in.delete(URL).status_code == 405
