"""Celery jobs. Prediction state lives in the database; every job is idempotent.

The database row is the truth and a broker message only a hint: a job whose message is lost
(broker restarted, data flushed, a publish that failed) or whose worker died is found and sent
again by the reconciler (``diagnosis/dispatch.py``). So a job here must be safe to receive twice
and to receive late:

- it **claims** the prediction with one conditional UPDATE — a queued one, or a running one whose
  lease expired (its worker stopped renewing) or that this same message already held (a retry, a
  redelivery after the worker was killed) — and does nothing otherwise;
- while it runs, a thread renews the **lease** (``heartbeat_at``) every few seconds;
- a database it cannot reach makes it **retry** (the message is re-sent, never dropped), and the
  heatmap files of a result it could not record are deleted, so no file is left that no row names.
"""

import contextlib
import logging
import threading

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from ml.decode import decode_with_tags

from .models import Prediction, heatmap_upload_to

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Errors that mean "the database is not there right now", not "this job is bad".
DATABASE_DOWN = (OperationalError, InterfaceError)


@worker_process_init.connect
def _load_model_in_new_worker_process(**kwargs):
    # Each prefork child loads the model (and torch) once, before its first job. The web tier
    # imports this module to send jobs and must not load torch: every model import here is lazy.
    from .inference import get_predictor

    get_predictor()


@worker_ready.connect
def _start_reconciler(sender=None, **kwargs):
    from .dispatch import reconciler

    reconciler.start()


@worker_shutdown.connect
def _stop_reconciler(**kwargs):
    from .dispatch import reconciler

    reconciler.stop()


def mark_failed(prediction_pk, message):
    """Unfinished → failed. Never touches a finished prediction."""
    return Prediction.objects.filter(pk=prediction_pk).update_status(Prediction.Status.FAILED, error=message[:2000])


def claim(prediction_pk, token):
    """→ running under this lease ``token``; False when there is nothing to do (finished, or leased elsewhere)."""
    now = timezone.now()
    expired = now - timezone.timedelta(seconds=settings.PNEUMOWEB_LEASE_SECONDS)
    claimable = Prediction.objects.filter(pk=prediction_pk).filter(
        Q(status=Prediction.Status.QUEUED)
        | Q(status=Prediction.Status.RUNNING, lease_token=token)
        | Q(status=Prediction.Status.RUNNING, heartbeat_at__lt=expired)
        | Q(status=Prediction.Status.RUNNING, heartbeat_at__isnull=True)
    )
    if claimable.filter(attempts__gte=MAX_ATTEMPTS).update_status(
            Prediction.Status.FAILED, error=f"Gave up after {MAX_ATTEMPTS} attempts: the worker was lost each time."):
        return False
    return bool(claimable.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=Prediction.Status.RUNNING, started_at=now, heartbeat_at=now, lease_token=token,
        attempts=F("attempts") + 1))


@contextlib.contextmanager
def lease(prediction_pk, token):
    """Renew the running job's lease every PNEUMOWEB_HEARTBEAT_SECONDS until the block ends."""
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.PNEUMOWEB_HEARTBEAT_SECONDS):
                try:
                    Prediction.objects.filter(pk=prediction_pk, status=Prediction.Status.RUNNING,
                                              lease_token=token).update(heartbeat_at=timezone.now())
                except DatabaseError:
                    log.warning("Heartbeat of prediction %s could not be written", prediction_pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"lease-{prediction_pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class PredictionTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Also called by the worker's main process when the hard time limit kills a job.
        prediction_pk = (kwargs or {}).get("prediction_pk")
        if prediction_pk is None:
            return
        try:
            mark_failed(prediction_pk, f"The job failed: {type(exc).__name__}: {exc}")
        except DatabaseError:  # the reconciler requeues it when the lease has expired
            log.exception("Could not mark prediction %s failed", prediction_pk)


def retry_later(task, exc):
    """Re-send this message after a back-off: the database is down, and the job must not be dropped."""
    countdown = min(settings.PNEUMOWEB_LEASE_SECONDS, 2 ** min(task.request.retries, 5))
    log.warning("Database unreachable (%s); prediction job retries in %s s", exc, countdown)
    return task.retry(exc=exc, countdown=countdown, max_retries=None)


@shared_task(
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
        close_old_connections()  # a connection broken by a database restart is replaced, not reused
        if not claim(prediction_pk, token):
            log.info("Prediction %s is finished, gone or leased elsewhere; nothing to do", prediction_pk)
            return
    except DATABASE_DOWN as exc:
        raise retry_later(self, exc) from exc
    with lease(prediction_pk, token):
        try:
            predictor, answer = assess(prediction_pk)
        except SoftTimeLimitExceeded:
            mark_failed(prediction_pk, f"Timed out after {settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT} s.")
            return
        except DATABASE_DOWN as exc:
            raise retry_later(self, exc) from exc
        except Exception as exc:
            log.exception("Prediction %s failed", prediction_pk)
            mark_failed(prediction_pk, f"{type(exc).__name__}: {exc}")
            return
        try:
            record(prediction_pk, token, predictor, answer)
        except DATABASE_DOWN as exc:
            raise retry_later(self, exc) from exc


def assess(prediction_pk):
    """(predictor, its Assessment) for the prediction's stored image."""
    from .inference import get_predictor  # torch: the worker's import, never the web tier's

    study = Prediction.objects.select_related("study").get(pk=prediction_pk).study
    with study.image.open("rb") as fh:
        image, info = decode_with_tags(
            fh, max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS, min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE
        )
    predictor = get_predictor()
    return predictor, predictor.assess(image, info, age=float(study.age_years), view=study.view, explain=True)


def record(prediction_pk, token, predictor, answer):
    """Write the answer (and its heatmaps) if this job still holds the lease; no file outlives a failed write."""
    heatmaps = save_heatmaps(answer.heatmaps) if answer.heatmaps else {}
    try:
        # The lease filter lets a cancellation (or a reclaim after an expired lease) that came meanwhile win.
        updated = Prediction.objects.filter(pk=prediction_pk, lease_token=token).update_status(
            Prediction.Status.REJECTED if answer.ood else Prediction.Status.SUCCEEDED,
            label=answer.label,
            probability=answer.probability,
            ood=answer.ood,
            ood_reason=answer.ood_reason,
            threshold=answer.threshold,
            population=answer.population,
            model_name=predictor.name,
            model_sha256=predictor.weights_sha256,
            error="",
            warnings=answer.warnings,
            **heatmaps,
        )
    except BaseException:
        delete_files(heatmaps.values())
        raise
    if not updated:  # cancelled or reclaimed meanwhile: nothing points at the maps
        delete_files(heatmaps.values())


def heatmap_storage():
    return Prediction._meta.get_field("heatmap").storage


def delete_files(names):
    for name in names:
        with contextlib.suppress(OSError):
            heatmap_storage().delete(name)


def save_heatmaps(maps):
    """Store each map as a PNG; returns {field name: stored name}."""
    from ml.explain import heatmap_png

    stored = {}
    try:
        for branch, field in Prediction.HEATMAP_BRANCHES.items():
            heat = getattr(maps, branch)
            if heat is not None:
                stored[field] = heatmap_storage().save(heatmap_upload_to(None, "map.png"),
                                                       ContentFile(heatmap_png(heat)))
    except BaseException:
        delete_files(stored.values())
        raise
    return stored
