"""No accepted study is lost: real faults on a real stack (gunicorn + PostgreSQL + Redis + celery worker).

Each test breaks something for real — flushes the broker's data, kills the whole worker mid-job,
restarts the database mid-run, takes the broker down during an upload — and then waits until
every prediction it accepted is final, with no file left that no row names. The stack runs with
short recovery times (lease 6 s, reconciler every second) so CI stays fast; docs/OPERATIONS.md
gives the production defaults. Every server stopped here is started again in a ``finally``.
"""

import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from ..servers import (
    POSTGRES_URL,
    REDIS_URL,
    require,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_redis,
)
from ..stack import FINISHED, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.machine_faults]

XRAYS = Path(__file__).parent.parent / "fixtures" / "xrays"
# A broker database of its own, so that flushing it touches nothing else on the machine's Redis.
BROKER_URL = REDIS_URL.rsplit("/", 1)[0] + "/9"
RECOVERY = {
    "PNEUMOWEB_HEARTBEAT_SECONDS": "2",
    "PNEUMOWEB_LEASE_SECONDS": "6",
    "PNEUMOWEB_RECONCILE_SECONDS": "1",
    "PNEUMOWEB_RESEND_AFTER_SECONDS": "4",
}
RECOVERY_TIMEOUT = 120


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    with running_stack(tmp_path_factory.mktemp("faults"), database_url=POSTGRES_URL, broker_url=BROKER_URL,
                       users=[("alice", "clinician")], extra_env=RECOVERY) as stack:
        yield stack


@pytest.fixture(scope="module")
def alice(stack):
    return stack.api_session("alice")


def submit(stack, session, xray=XRAYS / "pneumonia-1.jpeg"):
    response = stack.submit_xray(session, xray, patient_mrn=f"MRN-{uuid.uuid4().hex[:8]}", patient_name="Ada")
    assert response.status_code == 202, response.text
    return response.json()["id"]


def statuses(stack, ids):
    rows = stack.query("SELECT id, status, attempts FROM diagnosis_prediction WHERE id = ANY(%s)", (list(ids),))
    return {pk: (status, attempts) for pk, status, attempts in rows}


def wait_all_final(stack, ids, timeout=RECOVERY_TIMEOUT):
    def final():
        stack.supervise_worker()  # a worker that died of the fault is restarted, as in a deployment
        found = statuses(stack, ids)
        return found if all(status in FINISHED for status, _ in found.values()) and len(found) == len(ids) else None

    return wait_until(final, timeout, f"predictions {sorted(ids)} to finish", interval=0.5,
                      explain=lambda: f"{statuses(stack, ids)}\n{stack.explain()}")


def assert_no_orphan_files(stack):
    assert stack.stored_files() == stack.named_files()


def test_jobs_queued_when_the_broker_loses_its_data_still_finish(stack, alice):
    with stack.paused_worker():
        ids = [submit(stack, alice) for _ in range(5)]
        redis.Redis.from_url(BROKER_URL).flushdb()  # every queued message is gone
    found = wait_all_final(stack, ids)
    assert {status for status, _ in found.values()} == {"succeeded"}
    assert_no_orphan_files(stack)


def big_xray(tmp_path):
    """A real X-ray upscaled to 5000×5000: the worker needs about a second for it, long enough to be caught."""
    image = Image.open(XRAYS / "pneumonia-2.jpeg").convert("L").resize((5000, 5000), Image.Resampling.BILINEAR)
    noise = np.random.default_rng(0).integers(0, 3, (5000, 5000), dtype=np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(np.asarray(image) + noise).save(path, compress_level=1)
    return path


def test_a_job_whose_whole_worker_is_killed_mid_run_is_run_again(stack, alice, tmp_path):
    pk = submit(stack, alice, big_xray(tmp_path))
    # Freeze the pool child the moment it has claimed the job, then kill the whole worker.
    wait_until(lambda: statuses(stack, [pk])[pk][0] == "running", 60, "the job to start", interval=0.01)
    for child in stack.worker_children():
        os.kill(child, signal.SIGSTOP)
    stack.kill_worker()
    assert statuses(stack, [pk])[pk] == ("running", 1)  # a dead worker's job, as a lost machine leaves it
    stack.start_worker()
    found = wait_all_final(stack, [pk])
    assert found[pk] == ("succeeded", 2)  # reclaimed after its lease expired, not after 15 minutes
    assert_no_orphan_files(stack)


def test_jobs_running_into_a_database_restart_finish_when_it_is_back(stack, alice):
    with stack.paused_worker():
        ids = [submit(stack, alice) for _ in range(4)]
        try:
            stop_postgres()
            # The web tier answers a clear 503 meanwhile, and the worker cannot claim or record anything.
            response = alice.get(stack.url("/api/predictions/"), timeout=30)
            assert response.status_code == 503 and response.headers["Retry-After"] == "30"
        except BaseException:
            start_postgres()
            raise
    try:
        time.sleep(5)  # the worker takes the messages and cannot reach the database: it must not drop them
    finally:
        start_postgres()
    found = wait_all_final(stack, ids)
    assert {status for status, _ in found.values()} == {"succeeded"}
    assert_no_orphan_files(stack)


def test_an_upload_while_the_broker_is_down_is_accepted_and_run_when_it_returns(stack, alice):
    try:
        stop_redis()
        started = time.monotonic()
        pk = submit(stack, alice)  # accepted (202), nothing lost: the job waits in the database
        assert time.monotonic() - started < 15  # a refused publish does not hang the upload
        [(status, dispatched)] = stack.query("SELECT status, dispatched_at FROM diagnosis_prediction WHERE id = %s",
                                             (pk,))
        assert (status, dispatched) == ("queued", None)
    finally:
        start_redis()
    found = wait_all_final(stack, [pk])
    assert found[pk][0] == "succeeded"
    assert_no_orphan_files(stack)
