"""The README's run command on a machine without servers: no DATABASE_URL, no CELERY_BROKER_URL.

Web and worker run as real processes on the embedded defaults (SQLite and the
file-system Celery transport under PNEUMOWEB_VAR_DIR). Nothing here needs a server,
so these tests never skip.
"""

import uuid
from pathlib import Path

import pytest

from ..stack import running_stack

pytestmark = pytest.mark.integration

XRAY = Path(__file__).parent.parent / "fixtures" / "xrays" / "pneumonia-1.jpeg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    users = [("alice", "clinician"), ("bob", "clinician")]
    with running_stack(tmp_path_factory.mktemp("embedded"), users=users) as stack:
        assert "DATABASE_URL" not in stack.env and "CELERY_BROKER_URL" not in stack.env
        yield stack


def submit(stack, session, **fields):
    fields.setdefault("patient_mrn", f"MRN-{uuid.uuid4().hex[:8]}")
    fields.setdefault("patient_name", "Grace Hopper")
    response = stack.submit_xray(session, XRAY, **fields)
    assert response.status_code == 202, response.text
    return response


def test_it_predicts_over_rest_with_sqlite_and_the_filesystem_broker(stack, alice):
    response = submit(stack, alice, age="67", patient_mrn="MRN-EMB-1", patient_sex="M")
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert response.headers["Location"] == accepted["url"]

    body = stack.wait_for_prediction(alice, response.headers["Location"])

    assert body["status"] == "succeeded", body
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    assert 0.0 <= body["probability"] <= 1.0
    assert body["model"]["name"] and len(body["model"]["weights_sha256"]) == 64
    assert body["started_at"] and body["finished_at"] and body["error"] == ""
    assert body["study"]["age_years"] == "67.00"
    listed = alice.get(
        stack.url("/api/predictions/"), params={"status": "succeeded", "mrn": "MRN-EMB-1"}, timeout=30
    ).json()
    assert [item["id"] for item in listed["results"]] == [accepted["id"]]
    # Everything lives under the var dir: the SQLite file, the broker folders, the stored image.
    assert (stack.var_dir / "db.sqlite3").is_file()
    assert (stack.var_dir / "broker" / "queue").is_dir()
    assert stack.stored_image(accepted["id"]).read_bytes() == XRAY.read_bytes()

    bob = stack.api_session("bob")
    assert bob.get(accepted["url"], timeout=30).status_code == 404


def test_it_keeps_a_job_cancelled_while_queued_cancelled(stack, alice):
    with stack.paused_worker():
        accepted = submit(stack, alice).json()
        cancel = alice.post(stack.url(f"/api/predictions/{accepted['id']}/cancel/"), timeout=30)
        assert cancel.status_code == 200, cancel.text
    # A job submitted after it finishes only once the worker has consumed the cancelled one's message.
    later = submit(stack, alice).json()
    assert stack.wait_for_prediction(alice, later["url"])["status"] == "succeeded"

    body = alice.get(accepted["url"], timeout=30).json()
    assert body["status"] == "cancelled"
    assert body["probability"] is None and body["started_at"] is None
