"""manage.py backup / restore on the embedded defaults (SQLite), in processes of their own.

The PostgreSQL drill with uploads running is tests/integration/test_backup_restore_drill.py; these
cover what an operator can get wrong: a changed backup, a folder that is not one, a database or
media folder in use, and files lost before the backup.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pneumoweb.var_dir import prepare

from ..stack import migrated_sqlite_file, process_env

REPO = Path(__file__).resolve().parent.parent.parent

MAKE_RECORDS = """
from tests.factories import PredictionFactory, with_heatmaps
from diagnosis.reports import current_report
for _ in range(2):
    prediction = PredictionFactory(succeeded=True)
    with_heatmaps(prediction)
    current_report(prediction)
"""

# A second batch in a new process: the factories' sequences start again, so they start elsewhere.
MORE_RECORDS = ("from tests.factories import PatientFactory, UserFactory\n"
                "PatientFactory.reset_sequence(100)\nUserFactory.reset_sequence(100)\n" + MAKE_RECORDS)

DIGESTS = "import json; from core.backup import table_digests; print(json.dumps(table_digests()))"


def site(root):
    """The environment of one embedded deployment under ``root``."""
    prepare(root)
    return process_env(root)


def migrated(env):
    """The site's database as ``migrate`` makes it: a copy of one migrated once per test process."""
    shutil.copyfile(migrated_sqlite_file(), Path(env["PNEUMOWEB_VAR_DIR"]) / "db.sqlite3")


def manage(env, *args, check=True):
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    env = site(root / "a")
    migrated(env)
    manage(env, "shell", "-c", MAKE_RECORDS)
    said = manage(env, "backup", str(root / "backup")).stdout
    return {"root": root, "env": env, "backup": root / "backup", "said": said}


def test_it_backs_up_rows_and_files_with_a_manifest(backed_up):
    manifest = json.loads((backed_up["backup"] / "manifest.json").read_text())
    assert manifest["tables"]["diagnosis_prediction"]["rows"] == 2
    assert manifest["tables"]["diagnosis_report"]["rows"] == 2
    # Two studies, two reports and three heatmaps each.
    assert sum(name.startswith("studies/") for name in manifest["files"]) == 2
    assert sum(name.startswith("reports/") for name in manifest["files"]) == 2
    assert sum(name.startswith("heatmaps/") for name in manifest["files"]) == 6
    assert manifest["missing_files"] == []
    assert backed_up["said"].startswith("Backed up ")


def test_it_restores_the_same_rows_and_files(backed_up, tmp_path):
    env = site(tmp_path / "b")
    said = manage(env, "restore", str(backed_up["backup"]), "--no-erasures-since-backup").stdout
    assert "every checksum matched" in said
    # What the restore did besides, in its main output (it was on stderr only).
    assert "WARNING: restored without an erasure log (--no-erasures-since-backup)" in said
    assert "Ended every session and API token the backup held" in said
    assert "Queued again 0 job(s) the backup caught in flight" in said
    before = json.loads(manage(backed_up["env"], "shell", "-c", DIGESTS).stdout.splitlines()[-1])
    after = json.loads(manage(env, "shell", "-c", DIGESTS).stdout.splitlines()[-1])
    assert after == before
    source, restored = backed_up["root"] / "a" / "media", tmp_path / "b" / "media"
    names = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    assert names == {p.relative_to(restored) for p in restored.rglob("*") if p.is_file()}
    assert all((source / n).read_bytes() == (restored / n).read_bytes() for n in names)


def test_it_refuses_a_backup_that_changed_and_writes_nothing(backed_up, tmp_path):
    changed = tmp_path / "changed"
    subprocess.run(["cp", "-a", str(backed_up["backup"]), str(changed)], check=True)
    heatmap = next((changed / "media" / "heatmaps").rglob("*.png"))
    heatmap.write_bytes(heatmap.read_bytes() + b"x")
    env = site(tmp_path / "b")
    result = manage(env, "restore", str(changed), check=False)
    assert result.returncode == 1
    assert "does not match its manifest" in result.stderr and heatmap.name in result.stderr
    assert not (tmp_path / "b" / "media").exists() or not any((tmp_path / "b" / "media").rglob("*.*"))
    # Nothing was loaded: the same folder restores once the backup is intact again.
    assert "every checksum matched" in manage(env, "restore", str(backed_up["backup"]),
                                              "--no-erasures-since-backup").stdout


def test_it_refuses_a_folder_that_is_not_a_backup(tmp_path):
    env = site(tmp_path / "b")
    result = manage(env, "restore", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "has no manifest.json" in result.stderr


def test_it_refuses_a_database_in_use(backed_up):
    result = manage(backed_up["env"], "restore", str(backed_up["backup"]), check=False)
    assert result.returncode == 1
    assert "The database is not empty" in result.stderr


def test_it_refuses_a_media_folder_with_files(backed_up, tmp_path):
    env = site(tmp_path / "b")
    (tmp_path / "b" / "media" / "studies").mkdir(parents=True)
    (tmp_path / "b" / "media" / "studies" / "left.jpg").write_bytes(b"x")
    result = manage(env, "restore", str(backed_up["backup"]), check=False)
    assert result.returncode == 1
    assert "holds files" in result.stderr


def test_it_refuses_a_folder_already_used(backed_up):
    result = manage(backed_up["env"], "backup", str(backed_up["backup"]), check=False)
    assert result.returncode == 1
    assert "is not empty" in result.stderr


def test_it_names_files_lost_before_the_backup(tmp_path):
    env = site(tmp_path / "a")
    migrated(env)
    manage(env, "shell", "-c", MAKE_RECORDS)
    lost = next((tmp_path / "a" / "media" / "studies").rglob("*.*"))
    lost.unlink()
    result = manage(env, "backup", str(tmp_path / "backup"), check=False)
    assert result.returncode == 2
    assert lost.name in result.stderr
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert [m["table"] for m in manifest["missing_files"]] == ["diagnosis_study"]
    assert lost.name in manifest["missing_files"][0]["file"]


def test_it_erases_again_on_restore_what_was_erased_after_the_backup(tmp_path):
    erasures = tmp_path / "kept-apart" / "erasures.jsonl"  # outside the var folder and the backup
    env = {**site(tmp_path / "a"), "PNEUMOWEB_ERASURE_LOG": str(erasures)}
    migrated(env)
    manage(env, "shell", "-c", MAKE_RECORDS)
    manage(env, "create_user", "root", "--role", "admin")
    manage(env, "backup", str(tmp_path / "backup"))
    erased_files = manage(env, "shell", "-c", "from diagnosis.models import Study; "
                                              "print(Study.objects.get(patient_id=1).image.name)").stdout.split()[-1]
    said = manage(env, "erase_patient", "1", "--reason", "request 9", "--by", "root").stdout
    assert said.startswith("Erased patient P-")
    assert erasures.is_file()

    # The copy kept beside the backups, given to a restore on a machine that has no log of its own.
    restored = site(tmp_path / "b")
    said = manage(restored, "restore", str(tmp_path / "backup"), "--erasure-log", str(erasures)).stdout
    assert f"Erasure log {erasures}: 1 erasure(s) listed." in said
    assert f"Re-applied 1 erasure(s) from {erasures} to patients the backup still held." in said
    left = manage(restored, "shell", "-c", "from diagnosis.models import Erasure, Patient; "
                                           "print(sorted(Patient.objects.values_list('pk', flat=True)), "
                                           "list(Erasure.objects.filter(status='done', patient_pk=1)"
                                           ".values_list('reason', flat=True)))").stdout
    assert left.strip().splitlines()[-1] == "[2] ['request 9']"  # the reason it was erased for, kept
    assert not (tmp_path / "b" / "media" / erased_files).exists()
    assert (tmp_path / "backup" / "media" / erased_files).exists()  # the backup itself is never changed


def test_it_ends_every_session_and_token_the_backup_held(tmp_path):
    env = site(tmp_path / "a")
    migrated(env)
    manage(env, "shell", "-c", "from django.test import Client; from knox.models import AuthToken; "
                               "from tests.factories import UserFactory; u = UserFactory(); "
                               "AuthToken.objects.create(user=u); Client().force_login(u)")
    counts = ("from django.contrib.sessions.models import Session; from knox.models import AuthToken; "
              "from accounts.models import SignedInSession; "
              "print(Session.objects.count(), AuthToken.objects.count(), SignedInSession.objects.count())")
    assert manage(env, "shell", "-c", counts).stdout.split()[-3:] == ["1", "1", "1"]
    manage(env, "backup", str(tmp_path / "backup"))
    restored = site(tmp_path / "b")
    said = manage(restored, "restore", str(tmp_path / "backup"), "--no-erasures-since-backup").stdout
    assert "Ended every session and API token the backup held (1 token(s)): everyone signs in again." in said
    assert manage(restored, "shell", "-c", counts).stdout.split()[-3:] == ["0", "0", "0"]


def test_it_starts_a_new_seal_file_and_keeps_the_old_one(tmp_path):
    seals = tmp_path / "kept-apart" / "audit-seals.jsonl"
    env = {**site(tmp_path / "a"), "PNEUMOWEB_AUDIT_SEAL_FILE": str(seals), "PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS": "0"}
    migrated(env)
    manage(env, "shell", "-c", MAKE_RECORDS)
    manage(env, "seal_audit")
    manage(env, "backup", str(tmp_path / "backup"))
    manage(env, "shell", "-c", MORE_RECORDS)  # entries the restore will lose
    manage(env, "seal_audit")
    restored = {**site(tmp_path / "b"), "PNEUMOWEB_AUDIT_SEAL_FILE": str(seals),
                "PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS": "0"}
    said = manage(restored, "restore", str(tmp_path / "backup"), "--no-erasures-since-backup").stdout
    (kept,) = seals.parent.glob("audit-seals.jsonl.before-restore-*")
    assert f"The sealed-digest file was kept as {kept}; {seals} now anchors the restored seals." in said
    assert manage(restored, "verify_audit").stdout.rstrip().endswith("The audit trail is intact.")
    lost = manage(restored, "verify_audit", "--seals", str(kept), check=False)
    assert lost.returncode == 1 and "missing: entry" in lost.stdout


def test_it_refuses_to_restore_without_a_readable_erasure_log(backed_up, tmp_path):
    erasures = tmp_path / "erasures.jsonl"
    erasures.write_text('{"erasure": 1, "patient_pk": 1, "patient_created_at": "2026-1\n')
    env = {**site(tmp_path / "b"), "PNEUMOWEB_ERASURE_LOG": str(erasures)}
    result = manage(env, "restore", str(backed_up["backup"]), check=False)
    assert result.returncode == 1 and "erasure log cannot be read" in result.stderr
    tables = manage(env, "shell", "-c", "from django.db import connection; "
                                        "print(len(connection.introspection.table_names()))").stdout.split()[-1]
    assert tables == "0"


def test_it_refuses_to_restore_without_an_erasure_log_unless_told_there_is_none(backed_up, tmp_path):
    # A go-live drill restored a backup on a fresh machine without the log: the erased patient came
    # back in silence. Now the restore asks where the log is, or to be told that there is none.
    env = site(tmp_path / "b")  # PNEUMOWEB_ERASURE_LOG not set, no log anywhere
    result = manage(env, "restore", str(backed_up["backup"]), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No erasure log (PNEUMOWEB_ERASURE_LOG is not set): a patient erased since this backup" in result.stderr
    assert "--erasure-log PATH" in result.stderr and "--no-erasures-since-backup" in result.stderr
    assert tables_in(env) == "0"  # refused before anything was written
    missing = tmp_path / "not-there.jsonl"
    result = manage(env, "restore", str(backed_up["backup"]), "--erasure-log", str(missing), check=False)
    assert result.returncode == 1 and f"The erasure log {missing} does not exist" in result.stderr
    configured = {**env, "PNEUMOWEB_ERASURE_LOG": str(missing)}  # set, but the file is not on this machine
    result = manage(configured, "restore", str(backed_up["backup"]), check=False)
    assert result.returncode == 1 and f"No erasure log at {missing}" in result.stderr
    assert tables_in(env) == "0"


def tables_in(env):
    return manage(env, "shell", "-c", "from django.db import connection; "
                                      "print(len(connection.introspection.table_names()))").stdout.split()[-1]


@contextlib.contextmanager
def read_only(folder):
    """``folder`` made unwritable even for root (the immutable flag), or by its mode for other users."""
    folder.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_it_refuses_a_backup_folder_it_cannot_make_in_one_line(backed_up, tmp_path):
    # The docs' own pattern, `backup /backups/pneumoweb/$(date +%F)`, under a folder it may not write.
    configured = {**backed_up["env"], "PNEUMOWEB_ERASURE_LOG": str(tmp_path / "kept" / "erasures.jsonl")}
    with read_only(tmp_path / "backups") as backups:
        result = manage(configured, "backup", str(backups / "2026-12-07"), check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr
    assert result.stderr.strip().startswith(f"CommandError: Cannot write the backup to {backups / '2026-12-07'}: ")
    assert len(result.stderr.strip().splitlines()) == 1
