"""The demo users bin/run creates: its own create_user lines, run in-process."""

import io
import re
import shlex
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from diagnosis.permissions import can_monitor, can_review

from ..base import verify_session

pytestmark = pytest.mark.django_db

BIN_RUN = Path(__file__).resolve().parents[2] / "bin" / "run"


def bin_run_create_user_lines():
    lines = [line.strip() for line in BIN_RUN.read_text().splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python manage.py create_user ")]


def run_create_user(args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_creates_the_three_demo_users_of_bin_run_with_their_roles():
    printed = {}
    for args in bin_run_create_user_lines():
        text = run_create_user(args)
        match = re.search(r"Created (\w+) '([\w-]+)' with password '([^']+)'", text)
        assert match, text
        printed[match[2]] = (match[1], match[3])
    assert {name: role for name, (role, _) in printed.items()} == {
        "demo-clinician": "clinician", "demo-reviewer": "reviewer", "demo-admin": "admin"}
    users = {name: authenticate(username=name, password=password) for name, (_, password) in printed.items()}
    assert all(users.values())  # each printed password signs its user in
    admin, reviewer, clinician = users["demo-admin"], users["demo-reviewer"], users["demo-clinician"]
    assert admin.is_superuser and admin.is_staff and admin.groups.filter(name="reviewer").exists()
    assert can_review(admin) and can_monitor(admin)
    assert reviewer.is_staff and not reviewer.is_superuser and can_review(reviewer)
    assert not clinician.is_staff and not clinician.is_superuser and not can_review(clinician)


def test_it_gives_the_demo_admin_a_fresh_password_at_every_run():
    first = run_create_user(["create_user", "demo-admin", "--role", "admin"])
    second = run_create_user(["create_user", "demo-admin", "--role", "admin"])
    old = re.search(r"password '([^']+)'", first)[1]
    new = re.search(r"password '([^']+)'", second)[1]
    assert second.startswith("Reset password of admin 'demo-admin'") and old != new
    assert authenticate(username="demo-admin", password=old) is None
    assert authenticate(username="demo-admin", password=new).is_superuser


def test_it_lets_the_demo_admin_into_the_admin_site(client):
    password = re.search(r"password '([^']+)'", run_create_user(["create_user", "demo-admin", "--role", "admin"]))[1]
    assert client.login(username="demo-admin", password=password)
    assert client.get("/admin/auth/user/").status_code == 302  # the second factor first (its own tests)
    verify_session(client, authenticate(username="demo-admin", password=password))
    assert client.get("/admin/auth/user/").status_code == 200  # user management is the administrator's
