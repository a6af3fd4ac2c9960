"""A real celery worker process against the machine's PostgreSQL and Redis, driven over REST.

One stack (fresh database, own queue, gunicorn + worker) serves the whole module.
Locally a missing server skips these tests; under CI=true it fails them.
"""

import os
import signal
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from ..servers import POSTGRES_URL, REDIS_URL, require
from ..stack import FINISHED, running_stack, wait_until

pytestmark = pytest.mark.integration

XRAYS = Path(__file__).parent.parent / "fixtures" / "xrays"
PNEUMONIA_XRAY = XRAYS / "pneumonia-1.jpeg"
NORMAL_XRAY = XRAYS / "normal-1.jpeg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    users = [("alice", "clinician"), ("bob", "clinician"), ("rita", "reviewer")]
    with running_stack(
        tmp_path_factory.mktemp("stack"), database_url=POSTGRES_URL, broker_url=REDIS_URL, users=users
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def bob(stack):
    return stack.api_session("bob")


def submit(stack, session, xray=PNEUMONIA_XRAY, mrn=None, **fields):
    fields.setdefault("patient_mrn", mrn or f"MRN-{uuid.uuid4().hex[:8]}")
    fields.setdefault("patient_name", "Ada Lovelace")
    response = stack.submit_xray(session, xray, **fields)
    assert response.status_code == 202, response.text
    return response.json()


def when(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# 3.25 years before today: the typed age agrees with the birth date (a contradiction is refused).
BORN = (date.today() - timedelta(days=round(3.25 * 365.25))).isoformat()


@pytest.fixture(scope="module")
def finished(stack, alice):
    """One prediction run end to end by the worker; shared by the read-only tests."""
    response = stack.submit_xray(
        alice, PNEUMONIA_XRAY, age="3.25", patient_mrn="MRN-FLOW-1", patient_name="Ada Lovelace",
        patient_sex="F", patient_date_of_birth=BORN, view="AP",
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == accepted["url"]
    assert accepted["status"] == "queued"
    return accepted, stack.wait_for_prediction(alice, response.headers["Location"])


def test_it_runs_a_submitted_xray_on_the_worker_and_stores_the_result(stack, alice, finished):
    accepted, body = finished
    assert body["status"] == "succeeded", body
    assert body["id"] == accepted["id"] and body["patient"] == accepted["patient"]
    assert body["error"] == ""
    assert body["label"] in ("PNEUMONIA", "NORMAL")
    assert 0.0 <= body["probability"] <= 1.0
    assert 0.0 < body["threshold"] < 1.0
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    expected_confidence = body["probability"] if body["label"] == "PNEUMONIA" else 1 - body["probability"]
    assert body["confidence"] == pytest.approx(expected_confidence)
    assert body["model"]["name"]
    assert len(body["model"]["weights_sha256"]) == 64
    int(body["model"]["weights_sha256"], 16)
    assert when(body["queued_at"]) <= when(body["started_at"]) <= when(body["finished_at"])
    assert body["study"]["age_years"] == "3.25"
    assert body["study"]["view"] == "AP"
    assert body["study"]["original_filename"] == PNEUMONIA_XRAY.name
    patient = alice.get(stack.url(f"/api/patients/{body['patient']}/"), timeout=30).json()
    assert (patient["mrn"], patient["name"], patient["sex"], patient["date_of_birth"]) == (
        "MRN-FLOW-1", "Ada Lovelace", "F", BORN
    )
    # The worker read the very file the web process stored.
    image = alice.get(body["study"]["image_url"], timeout=30)
    assert image.status_code == 200 and image.content == PNEUMONIA_XRAY.read_bytes()


def test_it_filters_the_prediction_list(stack, alice, finished):
    _, body = finished
    other_label = "NORMAL" if body["label"] == "PNEUMONIA" else "PNEUMONIA"

    def ids(**params):
        response = alice.get(stack.url("/api/predictions/"), params=params, timeout=30)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["results"]}

    assert body["id"] in ids()
    assert body["id"] in ids(status="succeeded", label=body["label"], patient=body["patient"])
    assert body["id"] in ids(mrn="MRN-FLOW-1")
    assert body["id"] not in ids(status="queued")
    assert body["id"] not in ids(label=other_label)
    assert ids(patient=body["patient"] + 100_000) == set()


def test_it_hides_the_prediction_from_another_clinician(stack, bob, finished):
    _, body = finished
    assert bob.get(stack.url(f"/api/predictions/{body['id']}/"), timeout=30).status_code == 404
    assert bob.get(stack.url(f"/api/patients/{body['patient']}/"), timeout=30).status_code == 404
    assert bob.get(body["study"]["image_url"], timeout=30).status_code == 404
    listed = bob.get(stack.url("/api/predictions/"), timeout=30).json()
    assert body["id"] not in {item["id"] for item in listed["results"]}
    cancel = bob.post(stack.url(f"/api/predictions/{body['id']}/cancel/"), timeout=30)
    assert cancel.status_code == 404


def test_it_lets_a_reviewer_read_every_prediction(stack, finished):
    _, body = finished
    rita = stack.api_session("rita")
    assert rita.get(stack.url(f"/api/predictions/{body['id']}/"), timeout=30).status_code == 200


def run_one_more_job(stack, session):
    """Submit a job and wait for it: with one worker process, everything queued before it has run."""
    accepted = submit(stack, session, NORMAL_XRAY)
    return stack.wait_for_prediction(session, accepted["url"])


def test_it_never_runs_a_prediction_cancelled_while_queued(stack, alice):
    with stack.paused_worker():
        accepted = submit(stack, alice)
        cancel = alice.post(stack.url(f"/api/predictions/{accepted['id']}/cancel/"), timeout=30)
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["status"] == "cancelled"
    assert run_one_more_job(stack, alice)["status"] == "succeeded"

    body = alice.get(accepted["url"], timeout=30).json()
    assert body["status"] == "cancelled"
    assert body["label"] is None and body["probability"] is None and body["started_at"] is None
    [(attempts,)] = stack.query("SELECT attempts FROM diagnosis_prediction WHERE id = %s", (accepted["id"],))
    assert attempts == 0
    again = alice.post(stack.url(f"/api/predictions/{accepted['id']}/cancel/"), timeout=30)
    assert again.status_code == 409


def test_it_cancels_right_after_submit_and_a_cancelled_job_never_succeeds(stack, alice):
    # No pause: the worker may already be running or done; either outcome is fine,
    # but a cancellation that was accepted must stick.
    accepted = submit(stack, alice)
    cancel = alice.post(stack.url(f"/api/predictions/{accepted['id']}/cancel/"), timeout=30)
    assert cancel.status_code in (200, 409), cancel.text
    body = stack.wait_for_prediction(alice, accepted["url"])
    if cancel.status_code == 200:
        assert body["status"] == "cancelled"
        assert body["probability"] is None and body["label"] is None
    else:
        assert body["status"] == "succeeded"
    run_one_more_job(stack, alice)
    assert alice.get(accepted["url"], timeout=30).json() == body


def test_it_ignores_a_redelivered_message_for_a_finished_prediction(stack, alice, finished):
    _, before = finished
    row = "SELECT status, probability, started_at, finished_at, attempts FROM diagnosis_prediction WHERE id = %s"
    [stored_before] = stack.query(row, (before["id"],))
    task_id = f"e2e-duplicate-{uuid.uuid4().hex}"
    stack.send_task("diagnosis.tasks.run_prediction", {"prediction_pk": before["id"]}, task_id)
    run_one_more_job(stack, alice)

    assert task_id in stack.log("worker"), "the worker never received the re-sent message"
    assert stack.query(row, (before["id"],)) == [stored_before]
    after = alice.get(before["url"], timeout=30).json()
    assert after == before


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_it_marks_a_job_failed_when_its_image_cannot_be_read(stack, alice, damage):
    with stack.paused_worker():
        accepted = submit(stack, alice)
        image = stack.stored_image(accepted["id"])
        assert image.is_file()
        if damage == "deleted":
            image.unlink()
        else:
            image.write_bytes(b"\xff\xd8\xff\xe0 these are not the pixels you are looking for")
    body = stack.wait_for_prediction(alice, accepted["url"])

    assert body["status"] == "failed", body
    assert body["error"], "a failed job says why"
    # Overwritten bytes are not the file that was stored: refused before decoding (diagnosis/integrity.py).
    assert ("FileNotFoundError" if damage == "deleted" else "StoredFileChanged") in body["error"]
    assert body["label"] is None and body["probability"] is None
    assert body["finished_at"] is not None
    failed = alice.get(stack.url("/api/predictions/"), params={"status": "failed"}, timeout=30).json()
    assert accepted["id"] in {item["id"] for item in failed["results"]}
    # It stays failed: nothing left running once the worker has moved on.
    run_one_more_job(stack, alice)
    assert alice.get(accepted["url"], timeout=30).json()["status"] == "failed"
    assert stack.query("SELECT COUNT(*) FROM diagnosis_prediction WHERE status = 'running'") == [(0,)]


def release_fifo_reader(fifo):
    """Let a job blocked opening ``fifo`` go on (it reads an empty file and fails)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody was waiting


def test_it_redelivers_a_job_whose_worker_process_was_killed(stack, alice):
    """acks_late + reject_on_worker_lost: SIGKILL of the pool process mid-job loses nothing."""
    with stack.paused_worker():
        accepted = submit(stack, alice)
        image = stack.stored_image(accepted["id"])
        # The job will block opening its image (a FIFO with no writer) until we kill it.
        spare = image.with_name(image.name + ".spare")
        spare.write_bytes(image.read_bytes())
        image.unlink()
        os.mkfifo(image)
    [child] = stack.worker_children()
    killed = False
    try:
        running = stack.wait_for_prediction(alice, accepted["url"], statuses=("running", *FINISHED), timeout=60)
        assert running["status"] == "running", running
        os.kill(child, signal.SIGKILL)
        killed = True
    finally:
        if not killed:
            release_fifo_reader(image)
        os.replace(spare, image)  # the redelivered job reads the real file
    body = stack.wait_for_prediction(alice, accepted["url"])

    assert body["status"] == "succeeded", body
    assert body["label"] in ("PNEUMONIA", "NORMAL")
    [(attempts,)] = stack.query("SELECT attempts FROM diagnosis_prediction WHERE id = %s", (accepted["id"],))
    assert attempts == 2
    # The main process replaced the killed child and goes on working.
    wait_until(lambda: stack.worker_children() and child not in stack.worker_children(), 30, "a new pool process")
    assert run_one_more_job(stack, alice)["status"] == "succeeded"
