"""The restore drill: a backup taken while uploads run, restored onto a fresh PostgreSQL and media folder.

Stack A (PostgreSQL + Redis + gunicorn + worker) takes uploads from a thread while
``manage.py backup`` runs; stack B starts from an empty database and var folder, runs
``manage.py restore``, and then its own worker. The drill checks every patient, study,
prediction, report version and audit entry of the backup against B and against A (the rows that
cannot change must be equal in both), every restored file against the manifest and the row's
own checksum, that the snapshot is consistent (each study has its prediction, each report its
file), and that the jobs queued or running at backup time reach a final state on B.
"""

import datetime
import hashlib
import json
import threading
from pathlib import Path

import pytest

from ..servers import POSTGRES_URL, REDIS_URL, require
from ..stack import FINISHED, Stack, create_database, drop_database, running_stack, wait_until

pytestmark = pytest.mark.integration

XRAYS = Path(__file__).parent.parent / "fixtures" / "xrays"

REVIEW = """
from django.contrib.auth import get_user_model
from diagnosis.models import Prediction
from diagnosis.services import apply_review
prediction = Prediction.objects.get(pk={pk})
apply_review(prediction, verdict="disagree", label="NORMAL", comment="drill", reviewer=get_user_model().objects.get(
    username="rita"))
prediction.save()
"""


def rows(stack, sql):
    return {row[0]: row[1:] for row in stack.query(sql)}


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    root = tmp_path_factory.mktemp("drill")
    users = [("alice", "clinician"), ("rita", "reviewer"), ("root", "admin")]
    # The erasure log is kept apart from the database and its backups, and shared by A and B.
    erasures = {"PNEUMOWEB_ERASURE_LOG": str(root / "kept-apart" / "erasures.jsonl")}
    with running_stack(root / "a", database_url=POSTGRES_URL, broker_url=REDIS_URL, users=users,
                       extra_env={"PNEUMOWEB_PREDICT_RATE": "10000/min", **erasures}) as a:
        alice = a.api_session("alice")
        # A patient whose data is erased after the backup: the restore must not bring them back.
        gone = a.submit_xray(alice, XRAYS / "normal-2.jpeg", patient_mrn="MRN-ERASE", patient_name="Erase Me").json()
        a.wait_for_prediction(alice, gone["url"])
        gone_image = a.stored_image(gone["id"])
        # Before the backup: finished predictions with two report versions (one reviewed).
        first = [a.submit_xray(alice, XRAYS / name, patient_mrn=f"MRN-{n}", patient_name=f"Drill {n}").json()
                 for n, name in enumerate(("pneumonia-1.jpeg", "normal-1.jpeg"))]
        for submitted in first:
            a.wait_for_prediction(alice, submitted["url"])
            assert alice.get(submitted["url"] + "reports/", timeout=60).status_code == 200
        a.manage("shell", "-c", REVIEW.format(pk=first[0]["id"]))
        assert len(alice.get(first[0]["url"] + "reports/", timeout=60).json()) == 2

        # Uploads keep coming while the backup runs; some jobs are queued or running when it is taken.
        stop, accepted, errors = threading.Event(), [], []

        def upload():
            names = ["pneumonia-1.jpeg", "normal-1.jpeg", "pneumonia-2.jpeg", "normal-2.jpeg"]
            n = 0
            while not stop.is_set():
                response = a.submit_xray(alice, XRAYS / names[n % len(names)], age=str(20 + n % 50),
                                         patient_mrn=f"MRN-{n % 6}", patient_name=f"Drill {n % 6}")
                (accepted if response.status_code == 202 else errors).append(response)
                n += 1
                stop.wait(0.2)

        uploader = threading.Thread(target=upload)
        uploader.start()
        try:
            wait_until(lambda: len(accepted) >= 3, 60, "uploads to start")
            backup = root / "backup"
            with a.paused_worker():  # so that jobs are surely queued when the snapshot is taken
                wait_until(lambda: len(accepted) >= 5, 60, "uploads while the worker is paused")
                a.manage("backup", str(backup), timeout=300)
            wait_until(lambda: len(accepted) >= 8, 60, "uploads after the backup")
        finally:
            stop.set()
            uploader.join(timeout=120)
        assert not errors, [(r.status_code, r.text[:200]) for r in errors]
        [(gone_patient,)] = a.query("SELECT id FROM diagnosis_patient WHERE mrn = 'MRN-ERASE'")
        a.manage("erase_patient", str(gone_patient), "--reason", "drill: erasure after the backup", "--by", "root")
        assert not gone_image.exists()
        manifest = json.loads((backup / "manifest.json").read_text())
        a_rows = {
            "patients": rows(a, "SELECT id, mrn, name, owner_id FROM diagnosis_patient"),
            "studies": rows(a, "SELECT id, patient_id, image, image_sha256, age_years FROM diagnosis_study"),
            "reports": rows(a, "SELECT id, prediction_id, version, pdf FROM diagnosis_report"),
            "audit": rows(a, "SELECT id, action, object_repr, timestamp FROM auditlog_logentry"),
        }
        b_database = create_database(POSTGRES_URL)
        b = Stack(root / "b", database_url=b_database, broker_url=REDIS_URL, extra_env=erasures)
        try:
            restored = b.manage("restore", str(backup), timeout=300)
            (in_flight,) = b.query("SELECT count(*) FROM diagnosis_prediction WHERE status IN ('queued', 'running')")[0]
            b.start()
            yield {"a": a, "b": b, "manifest": manifest, "backup": backup, "a_rows": a_rows,
                   "accepted": len(accepted), "restored": restored.stdout, "in_flight": in_flight,
                   "gone": {"patient": gone_patient, "prediction": gone["id"],
                            "image": gone_image.relative_to(a.media_root).as_posix()}}
        finally:
            b.stop()
            drop_database(b_database)


def test_it_restores_every_table_the_backup_counted(drill):
    b, manifest = drill["b"], drill["manifest"]
    assert "every checksum matched" in drill["restored"]
    # Less what the erasure made after the backup took away again (its row says what).
    [(erased,)] = b.query("SELECT erased FROM diagnosis_erasure WHERE patient_pk = %s", (drill["gone"]["patient"],))
    less = {"diagnosis_patient": 1, "diagnosis_study": len(erased["studies"]),
            "diagnosis_prediction": len(erased["predictions"]), "diagnosis_report": len(erased["reports"])}
    for table in ("diagnosis_patient", "diagnosis_study", "diagnosis_prediction", "diagnosis_report", "auth_user"):
        (count,) = b.query(f"SELECT count(*) FROM {table}")[0]
        assert count == manifest["tables"][table]["rows"] - less.get(table, 0) > 0, table
    (entries,) = b.query("SELECT count(*) FROM auditlog_logentry")[0]
    assert entries > manifest["tables"]["auditlog_logentry"]["rows"]  # the erasure's deletions were recorded


def test_it_erases_again_what_was_erased_after_the_backup(drill):
    b, gone = drill["b"], drill["gone"]
    assert b.query("SELECT id FROM diagnosis_patient WHERE id = %s", (gone["patient"],)) == []
    assert b.query("SELECT id FROM diagnosis_prediction WHERE id = %s", (gone["prediction"],)) == []
    assert gone["image"] in drill["manifest"]["files"]
    assert not (b.media_root / gone["image"]).exists()
    # Said in the restore's main output, with the reason the erasure was made for kept.
    assert "Re-applied 1 erasure(s) from " in drill["restored"]
    assert b.query("SELECT reason FROM diagnosis_erasure WHERE patient_pk = %s", (gone["patient"],)) == [
        ("drill: erasure after the backup",)]


def test_it_restores_records_as_they_were_in_stack_a(drill):
    a_rows, b = drill["a_rows"], drill["b"]
    taken = datetime.datetime.fromisoformat(drill["manifest"]["created_at"])
    b_rows = {
        "patients": rows(b, "SELECT id, mrn, name, owner_id FROM diagnosis_patient"),
        "studies": rows(b, "SELECT id, patient_id, image, image_sha256, age_years FROM diagnosis_study"),
        "reports": rows(b, "SELECT id, prediction_id, version, pdf FROM diagnosis_report"),
        "audit": rows(b, "SELECT id, action, object_repr, timestamp FROM auditlog_logentry"),
    }
    for kind, restored in b_rows.items():
        assert restored, kind
        for pk, row in restored.items():
            if kind == "audit" and row[-1] > taken:
                continue  # written by B itself after the backup (the erasure re-applied), ids reused
            assert a_rows[kind][pk] == row, (kind, pk)
    assert any(version == 2 for _, version, _ in b_rows["reports"].values())


def test_it_restores_a_consistent_snapshot(drill):
    b = drill["b"]
    without_prediction = b.query("SELECT s.id FROM diagnosis_study s LEFT JOIN diagnosis_prediction p"
                                 " ON p.study_id = s.id WHERE p.id IS NULL")
    assert without_prediction == []
    assert len(drill["a_rows"]["studies"]) > len(rows(b, "SELECT id, image FROM diagnosis_study"))  # uploads went on


def test_it_restores_every_file_with_its_checksum(drill):
    b, manifest = drill["b"], drill["manifest"]
    named = b.named_files()
    assert named and named <= set(manifest["files"])
    assert set(manifest["files"]) - named == {name for name in manifest["files"] if not (b.media_root / name).exists()}
    for name, digest in manifest["files"].items():
        if name in named:
            assert hashlib.sha256((b.media_root / name).read_bytes()).hexdigest() == digest, name
    for image, recorded in b.query("SELECT image, image_sha256 FROM diagnosis_study"):
        assert manifest["files"][image] == recorded
    assert manifest["missing_files"] == []


def test_it_finishes_the_jobs_that_were_in_flight(drill):
    b = drill["b"]
    assert drill["in_flight"] >= 3  # queued while the worker was paused, restored as queued
    wait_until(lambda: b.query("SELECT count(*) FROM diagnosis_prediction WHERE status <> ALL(%s)",
                               (list(FINISHED),))[0][0] == 0, 240, "every restored job to finish", explain=b.explain)
    statuses = dict(b.query("SELECT status, count(*) FROM diagnosis_prediction GROUP BY status"))
    assert set(statuses) <= {"succeeded", "rejected"}, statuses


def test_it_refuses_to_restore_onto_a_database_in_use(drill):
    import subprocess
    import sys

    from ..stack import REPO

    result = subprocess.run([sys.executable, "manage.py", "restore", str(drill["backup"])], cwd=REPO,
                            env=drill["b"].env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "not empty" in result.stderr


def test_it_refuses_to_restore_without_the_erasure_log_and_says_so_when_told_none(drill, tmp_path):
    # The go-live drill's finding: the same backup restored into another fresh database and folder,
    # with no erasure log there, brought the erased patient back in silence.
    database = create_database(POSTGRES_URL)
    c = Stack(tmp_path / "c", database_url=database, broker_url=REDIS_URL)  # PNEUMOWEB_ERASURE_LOG not set
    try:
        with pytest.raises(AssertionError, match=r"exited 1:[\s\S]*No erasure log \(PNEUMOWEB_ERASURE_LOG is not set\)"):
            c.manage("restore", str(drill["backup"]))
        assert c.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
        said = c.manage("restore", str(drill["backup"]), "--no-erasures-since-backup", timeout=300).stdout
        assert "WARNING: restored without an erasure log (--no-erasures-since-backup): a patient erased " \
               f"after the backup was taken ({drill['manifest']['created_at']}) is back" in said
        # Told so, the operator gets what they asked for: the patient erased after the backup is back.
        assert c.query("SELECT id FROM diagnosis_patient WHERE id = %s", (drill["gone"]["patient"],)) != []
        assert "Queued again" in said and "Ended every session and API token" in said
    finally:
        c.stop()
        drop_database(database)
