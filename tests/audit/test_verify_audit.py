"""manage.py verify_audit and manage.py seal_audit: what an operator runs."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from .test_seals import seal_file, write_entries  # noqa: F401 - seal_file is an autouse fixture

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_seals_and_says_how_much():
    write_entries(3)
    said = run("seal_audit")
    assert said.startswith("1 new seal(s) covering ")
    assert said.rstrip().endswith("holds 1 seal(s)")
    assert run("seal_audit").startswith("0 new seal(s)")


def test_it_says_an_intact_trail_is_intact():
    write_entries(3)
    run("seal_audit")
    said = run("verify_audit")
    assert "1 seal(s)" in said and "1 seal(s) in the file" in said
    assert said.rstrip().endswith("The audit trail is intact.")


def test_it_exits_1_naming_the_first_problem():
    ids = write_entries(4)
    run("seal_audit")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM auditlog_logentry WHERE id = %s", [ids[1]])
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", stdout=out)
    assert raised.value.returncode == 1
    assert f"removed: entry {ids[1]}" in str(raised.value)
    assert f"removed: entry {ids[1]}" in out.getvalue()


def test_it_reads_the_file_given_and_answers_json(tmp_path):
    write_entries(2)
    run("seal_audit")
    elsewhere = tmp_path / "from-the-store.jsonl"
    elsewhere.write_text("")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", "--seals", str(elsewhere), "--json", stdout=out)
    verdict = json.loads(out.getvalue())
    assert verdict["ok"] is False and verdict["anchored_seals"] == 0
    assert verdict["problems"][0]["kind"] == "seal"


def test_it_refuses_another_installations_seal_file_as_such_not_as_tampering(tmp_path, settings):
    import uuid

    from audit.seals import installation

    write_entries(3)
    run("seal_audit")
    ours = [json.loads(line) for line in settings.PNEUMOWEB_AUDIT_SEAL_FILE.read_text().splitlines()]
    assert ours[0]["installation"] == installation()  # every line names the installation it anchors
    # Another site's file: its own chain, its own installation.
    theirs = tmp_path / "other-site-seals.jsonl"
    other = str(uuid.uuid4())
    theirs.write_text("".join(json.dumps({**line, "digest": "f" * 64, "installation": other}) + "\n" for line in ours))
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", "--seals", str(theirs), stdout=out)
    assert raised.value.returncode == 2
    assert f"holds the seals of another installation ({other}), not of this one ({installation()})" in str(raised.value)
    assert "digest differs" not in str(raised.value) + out.getvalue()


def test_it_still_compares_a_file_whose_lines_name_no_installation(tmp_path, settings):
    # Files written before the lines named their installation are checked as they always were.
    write_entries(3)
    run("seal_audit")
    old = tmp_path / "older-seals.jsonl"
    lines = [json.loads(line) for line in settings.PNEUMOWEB_AUDIT_SEAL_FILE.read_text().splitlines()]
    old.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "installation"}) + "\n" for line in lines))
    assert run("verify_audit", "--seals", str(old)).rstrip().endswith("The audit trail is intact.")
    old.write_text(old.read_text().replace(lines[0]["digest"], "0" * 64))
    with pytest.raises(CommandError) as raised:
        run("verify_audit", "--seals", str(old))
    assert raised.value.returncode == 1 and "its digest differs" in str(raised.value)


def test_a_line_naming_another_installation_in_this_installations_file_is_a_problem(settings):
    # Appending one forged line must not turn the whole file into "another installation's file".
    write_entries(3)
    run("seal_audit")
    path = settings.PNEUMOWEB_AUDIT_SEAL_FILE
    [line] = [json.loads(text) for text in path.read_text().splitlines()]
    path.write_text(path.read_text() + json.dumps({**line, "number": 2, "installation": "forged"}) + "\n")
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", stdout=out)
    assert raised.value.returncode == 1
    assert "seal 2 — the line names another installation (forged)" in out.getvalue()
