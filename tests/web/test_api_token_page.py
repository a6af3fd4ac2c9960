import re

import pytest
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

URL = reverse("api_token")


def shown_token(html):
    return re.search(r'data-testid="api-token">([0-9a-f]+)</pre>', html).group(1)


def test_it_requires_login(client, clinician):
    assert client.get(URL)["Location"].startswith(reverse("login"))
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not AuthToken.objects.exists()


def test_it_says_when_there_is_no_token(logged_in, clinician):
    html = logged_in.get(URL).content.decode()
    assert "You have no API token." in html
    assert 'data-testid="token-create"' in html and 'data-testid="token-revoke"' not in html
    assert not AuthToken.objects.exists()  # looking does not create one


def test_it_shows_a_curl_example(logged_in):
    html = logged_in.get(URL).content.decode()
    assert 'curl -H "Authorization: Token YOUR_TOKEN"' in html
    assert "-F image=@chest.jpg -F age=4.5" in html
    assert "http://testserver/api/predict/" in html
    assert f'href="{reverse("api_docs")}"' in html


def test_it_creates_a_token_shows_it_once_and_stores_only_its_hash(logged_in, clinician):
    response = logged_in.post(URL, {"action": "create"})
    assert response.status_code == 200
    html = response.content.decode()
    token = shown_token(html)
    assert len(token) == 64 and "cannot be shown again" in html
    assert "no-store" in response["Cache-Control"]  # the secret is not kept in caches
    stored = AuthToken.objects.get(user=clinician)
    assert token not in (stored.digest, stored.token_key) and stored.token_key == token[:15]
    assert stored.expiry is not None
    later = logged_in.get(URL).content.decode()
    assert token not in later and token[:8] in later  # listed by its first characters only


def test_it_revokes_every_token(logged_in, clinician):
    logged_in.post(URL, {"action": "create"})
    logged_in.post(URL, {"action": "create"})
    response = logged_in.post(URL, {"action": "revoke"}, follow=True)
    assert response.redirect_chain == [(URL, 302)]
    assert "Your API tokens were revoked." in response.content.decode()
    assert not AuthToken.objects.filter(user=clinician).exists()


def test_it_lets_the_new_token_call_the_api_until_revoked(logged_in, clinician):
    token = shown_token(logged_in.post(URL, {"action": "create"}).content.decode())
    api = Client()
    assert api.get(reverse("api:prediction-list"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    logged_in.post(URL, {"action": "revoke"})
    assert api.get(reverse("api:prediction-list"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 401


def test_it_touches_only_the_users_own_tokens(logged_in, clinician, other_clinician):
    theirs, _ = AuthToken.objects.create(user=other_clinician)
    logged_in.post(URL, {"action": "create"})
    logged_in.post(URL, {"action": "revoke"})
    assert AuthToken.objects.filter(pk=theirs.pk).exists()
    assert theirs.token_key[:8] not in logged_in.get(URL).content.decode()


def test_it_uses_post_forms_with_csrf(logged_in, clinician):
    AuthToken.objects.create(user=clinician)
    html = logged_in.get(URL).content.decode()
    assert html.count('<form method="post">') == 2
    assert 'name="action" value="create"' in html and 'name="action" value="revoke"' in html
    assert html.count("csrfmiddlewaretoken") >= 3  # the two forms and the logout form


def test_it_enforces_csrf(clinician):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    assert client.post(URL, {"action": "create"}).status_code == 403
    assert not AuthToken.objects.exists()


def test_it_refuses_other_methods(logged_in):
    assert logged_in.put(URL).status_code == 405
    assert logged_in.delete(URL).status_code == 405
