"""Headers and settings that hold for every response, and the deployment check."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError
from django.urls import reverse

from pneumoweb.var_dir import prepare

REPO = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.django_db


def test_every_page_carries_a_content_security_policy_without_inline_script(logged_in):
    policy = logged_in.get(reverse("dashboard"))["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and directives["frame-ancestors"] == "'none'"


def test_no_page_has_inline_script_or_style(logged_in, reviewer_client):
    import re

    for client, url in [(logged_in, reverse("dashboard")), (logged_in, reverse("upload")),
                        (logged_in, reverse("api_token")), (logged_in, reverse("api_docs")),
                        (reviewer_client, reverse("admin:diagnosis_prediction_changelist"))]:
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert " style=" not in html, url


def test_patient_data_is_never_stored_by_a_cache(logged_in, patient):
    for url in (reverse("dashboard"), reverse("patient_detail", args=[patient.pk]), reverse("api:patient-list")):
        assert "no-store" in logged_in.get(url)["Cache-Control"], url


def test_a_database_outage_is_a_503_to_repeat_not_a_500(logged_in, monkeypatch):
    from diagnosis import views

    def down(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    monkeypatch.setattr(views, "worklist_order", down)
    response = logged_in.get(reverse("dashboard"))
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert "try again" in response.content.decode()
    api = logged_in.get(reverse("api:prediction-list"))  # the API keeps working meanwhile in this test
    assert api.status_code == 200


def deploy_check(tmp_path, **env):
    prepare(tmp_path)
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120)


PRODUCTION = {"DJANGO_SECURE_COOKIES": "true", "DJANGO_SECRET_KEY": "kR7-vQ2pZ9xW4mL8nB3cT6yH1jF5sD0gA" * 2,
              "DJANGO_ALLOWED_HOSTS": "pneumoweb.example.org"}


def test_the_production_settings_pass_the_deployment_check(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION, PNEUMOWEB_ERASURE_LOG="/srv/backups/pneumoweb/erasures.jsonl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in (result.stdout + result.stderr)


def test_the_deployment_check_names_a_missing_erasure_log(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION)
    assert result.returncode != 0 and "(pneumoweb.W002) PNEUMOWEB_ERASURE_LOG is not set" in result.stderr


def test_https_settings_turn_on_hsts_and_the_redirect(tmp_path):
    code = ("import json, django; django.setup(); from django.conf import settings as s; print(json.dumps("
            "[s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE]))")
    prepare(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    on = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "DJANGO_SECURE_COOKIES": "true"},
                        capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert json.loads(on.stdout.splitlines()[-1]) == [31_536_000, True, True, True]
    assert json.loads(off.stdout.splitlines()[-1]) == [0, False, False, False]


def test_a_typo_in_a_boolean_setting_is_refused(tmp_path):
    result = deploy_check(tmp_path, DJANGO_SECURE_COOKIES="ture")
    assert result.returncode != 0 and "DJANGO_SECURE_COOKIES='ture'" in result.stderr
