"""The Celery task that runs predictions. Prediction state lives in the database; the task is idempotent.

The database row is the truth and a broker message only a hint: a job whose message is lost
(broker restarted, data flushed, a publish that failed) or whose worker died is found and sent
again by the reconciler (``dispatch.py``). So the task must be safe to receive twice and late:

- it **claims** predictions with conditional UPDATEs (``lease.py``) — its own (a queued one, or a
  running one whose lease expired or that this same message already held: a retry, a redelivery
  after the worker was killed) and, for **dynamic batching**, up to ``PNEUMOWEB_BATCH_SIZE - 1``
  other queued ones, oldest first, waiting at most ``PNEUMOWEB_BATCH_WAIT_MS`` for them; the
  messages of the others then find nothing to do;
- while it runs, a thread renews the **lease** (``heartbeat_at``) of every claimed prediction;
- the batch is decoded in parallel and runs through the model in one forward pass (with the
  heatmaps from it, ``predictor.py``); each study keeps its own checks, errors and answer — one
  unreadable file never fails its batch-mates — and the results are written in one transaction
  (``results.py``);
- a database it cannot reach makes it **retry** (the message is re-sent, never dropped), and the
  heatmap files of results it could not record are deleted, so no file is left that no row names.
"""

import logging

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from core.connections import refresh_connection

from ..models import Prediction
from .lease import claim_batch, held, mark_failed
from .predictor import assess
from .results import save_results

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now", not "this job is bad".
DATABASE_DOWN = (OperationalError, InterfaceError)
# The name messages carry on the wire: kept from before the job modules moved into diagnosis/jobs/,
# so messages already queued at an upgrade still find their task.
TASK_NAME = "diagnosis.tasks.run_prediction"


class PredictionTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Also called by the worker's main process when the hard time limit kills a job.
        prediction_pk = (kwargs or {}).get("prediction_pk")
        if prediction_pk is None:
            return
        try:
            held_rows = Prediction.objects.filter(lease_token=task_id, status=Prediction.Status.RUNNING)
            mark_failed([prediction_pk, *held_rows.values_list("pk", flat=True)],
                        f"The job failed: {type(exc).__name__}: {exc}")
        except DatabaseError:  # the reconciler requeues them when the lease has expired
            log.exception("Could not mark prediction %s failed", prediction_pk)


def retry_later(task, exc):
    """Re-send this message after a back-off: the database is down, and the job must not be dropped."""
    countdown = min(settings.PNEUMOWEB_LEASE_SECONDS, 2 ** min(task.request.retries, 5))
    log.warning("Database unreachable (%s); prediction job retries in %s s", exc, countdown)
    return task.retry(exc=exc, countdown=countdown, max_retries=None)


@shared_task(
    name=TASK_NAME,
    base=PredictionTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.PNEUMOWEB_TASK_HARD_TIME_LIMIT,
)
def run_prediction(self, *, prediction_pk):
    token = self.request.id or f"eager-{prediction_pk}"
    try:
        refresh_connection()
        claimed = claim_batch(prediction_pk, token)
    except DATABASE_DOWN as exc:
        raise retry_later(self, exc) from exc
    if not claimed:
        log.info("Prediction %s is finished, gone or leased elsewhere; nothing to do", prediction_pk)
        return
    with held(claimed, token):
        try:
            predictor, answers, site = assess(claimed)
            save_results(token, predictor, answers, site)
        except SoftTimeLimitExceeded:
            mark_failed(claimed, f"Timed out after {settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT} s.")
        except DATABASE_DOWN as exc:
            raise retry_later(self, exc) from exc
