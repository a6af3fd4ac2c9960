"""A PACS sender's tokens: their own lifetime, rotated and revoked, and warned of on the monitoring page."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from knox.models import AuthToken

from accounts import sender_tokens

pytestmark = pytest.mark.django_db


def command(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def sender(name="orthanc"):
    command("create_user", name, "--role", "pacs", "--password", "pw-sender-1x")
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=name)


def test_create_user_gives_a_sender_a_token_of_a_senders_lifetime(settings):
    settings.PNEUMOWEB_SENDER_TOKEN_TTL_DAYS = 200
    out = StringIO()
    call_command("create_user", "orthanc", "--role", "pacs", "--password", "pw-sender-1x", stdout=out)
    assert "API token for STOW-RS" in out.getvalue() and "It ends on" in out.getvalue()
    (row,) = AuthToken.objects.filter(user__username="orthanc")
    assert abs(row.expiry - (timezone.now() + timedelta(days=200))) < timedelta(minutes=1)


def test_rotation_issues_a_new_token_and_ends_the_old_ones_within_a_day():
    user = sender()
    old = AuthToken.objects.get(user=user)
    out = command("sender_token", "orthanc", "--rotate")
    token = out.split("Token …): ")[1].split()[0]
    old.refresh_from_db()
    assert old.expiry <= timezone.now() + timedelta(days=1, minutes=1)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/dicom-web/studies", b"", content_type="multipart/related; boundary=x").status_code == 400


def test_revoking_ends_every_token_and_pushes_are_refused():
    user = sender()
    out = command("sender_token", "orthanc", "--rotate")
    token = out.split("Token …): ")[1].split()[0]
    assert "Revoked 2 token(s)" in command("sender_token", "orthanc", "--revoke")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/dicom-web/studies", b"", content_type="multipart/related; boundary=x").status_code == 401
    assert not AuthToken.objects.filter(user=user).exists()


def test_the_command_is_for_senders_only(clinician):
    with pytest.raises(CommandError, match="is not a PACS sender"):
        command("sender_token", clinician.username, "--rotate")
    with pytest.raises(CommandError, match="There is no user 'ghost'"):
        command("sender_token", "ghost")


def test_monitoring_warns_before_a_senders_token_ends(reviewer_client, settings):
    settings.PNEUMOWEB_SENDER_TOKEN_WARN_DAYS = 14
    user = sender()
    assert 'data-testid="sender-token-warning"' not in reviewer_client.get("/monitoring/").content.decode()
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() + timedelta(days=5))
    html = reviewer_client.get("/monitoring/").content.decode()
    assert 'data-testid="sender-token-warning"' in html and "sender_token orthanc --rotate" in html
    sender_tokens.revoke(user)
    assert [ending.expiry for ending in sender_tokens.ending_soon()] == [None]
    assert "has no valid API token" in reviewer_client.get("/monitoring/").content.decode()


def test_the_token_endpoint_gives_a_sender_a_senders_lifetime(client, settings):
    settings.PNEUMOWEB_SENDER_TOKEN_TTL_DAYS = 90
    sender()
    response = client.post("/api/auth/token/", {"username": "orthanc", "password": "pw-sender-1x"},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    newest = AuthToken.objects.filter(user__username="orthanc").order_by("-created").first()
    assert abs(newest.expiry - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
