import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

URL = reverse("api_token")


def test_it_creates_shows_once_and_revokes_a_token(logged_in, clinician):
    assert "You have no API token." in logged_in.get(URL).content.decode()
    response = logged_in.post(URL, {"action": "create"})
    token = Token.objects.get(user=clinician)
    assert token.key in response.content.decode()
    assert token.key not in logged_in.get(URL).content.decode()
    logged_in.post(URL, {"action": "create"})
    assert Token.objects.get(user=clinician).key != token.key
    logged_in.post(URL, {"action": "revoke"})
    assert not Token.objects.filter(user=clinician).exists()


def test_it_lets_the_new_token_call_the_api(logged_in, clinician, client):
    logged_in.post(URL, {"action": "create"})
    key = Token.objects.get(user=clinician).key
    logged_in.logout()
    assert client.get(reverse("api:prediction-list"), HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
