"""Celery jobs. Prediction state lives in the database; every job is idempotent.

The database row is the truth and a broker message only a hint: a job whose message is lost
(broker restarted, data flushed, a publish that failed) or whose worker died is found and sent
again by the reconciler (``diagnosis/dispatch.py``). So a job here must be safe to receive twice
and to receive late:

- it **claims** predictions with conditional UPDATEs — its own (a queued one, or a running one
  whose lease expired or that this same message already held: a retry, a redelivery after the
  worker was killed) and, for **dynamic batching**, up to ``PNEUMOWEB_BATCH_SIZE - 1`` other
  queued ones, oldest first, waiting at most ``PNEUMOWEB_BATCH_WAIT_MS`` for them; the messages
  of the others then find nothing to do;
- while it runs, a thread renews the **lease** (``heartbeat_at``) of every claimed prediction;
- the batch is decoded in parallel and runs through the model in one forward pass (with the
  heatmaps from it); each study keeps its own checks, errors and answer — one unreadable file
  never fails its batch-mates — and the results are written in one transaction;
- a database it cannot reach makes it **retry** (the message is re-sent, never dropped), and the
  heatmap files of results it could not record are deleted, so no file is left that no row names.
"""

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_init, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ml.decode import decode_with_tags

from .connections import refresh_connection
from .models import Prediction, heatmap_upload_to

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Errors that mean "the database is not there right now", not "this job is bad".
DATABASE_DOWN = (OperationalError, InterfaceError)
GAVE_UP = f"Gave up after {MAX_ATTEMPTS} attempts: the worker was lost each time."


_torch_threads = 0  # 0: torch's default (a worker started without celeryd_init, e.g. in tests)


@celeryd_init.connect
def _share_the_cores_among_pool_processes(options=None, **kwargs):
    # Runs in the worker's main process before it forks its pool. Each of N pool processes gets
    # cores / N torch threads: left at torch's default (every core), two processes on two cores
    # ran 4 threads and measured 1.2 predictions/s against 3.7 for one (bench/load.py e2e).
    global _torch_threads
    cores = len(os.sched_getaffinity(0))
    processes = int((options or {}).get("concurrency") or cores)  # Celery's default: one per core
    _torch_threads = settings.PNEUMOWEB_TORCH_THREADS or max(1, cores // processes)


@worker_process_init.connect
def _load_model_in_new_worker_process(**kwargs):
    # Each prefork child loads the model (and torch) once, before its first job. The web tier
    # imports this module to send jobs and must not load torch: every model import here is lazy.
    from .inference import get_predictor, set_torch_threads

    if _torch_threads:
        set_torch_threads(_torch_threads)
    get_predictor()


@worker_ready.connect
def _start_reconciler(sender=None, **kwargs):
    from .dispatch import reconciler

    reconciler.start()


@worker_shutdown.connect
def _stop_reconciler(**kwargs):
    from .dispatch import reconciler

    reconciler.stop()


def mark_failed(prediction_pks, message):
    """Unfinished → failed. Never touches a finished prediction."""
    pks = [prediction_pks] if isinstance(prediction_pks, int) else list(prediction_pks)
    return Prediction.objects.filter(pk__in=pks).update_status(Prediction.Status.FAILED, error=message[:2000])


def _take(queryset, token, now):
    return queryset.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=Prediction.Status.RUNNING, started_at=now, heartbeat_at=now, lease_token=token,
        attempts=F("attempts") + 1)


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
    if claimable.filter(attempts__gte=MAX_ATTEMPTS).update_status(Prediction.Status.FAILED, error=GAVE_UP):
        return False
    return bool(_take(claimable, token, now))


def claim_queued(token, limit):
    """Up to ``limit`` other queued predictions, oldest first, under this lease; returns their pks.

    Rows another worker is claiming at the same moment are skipped (SKIP LOCKED where the database
    has it); the conditional UPDATE makes a double claim impossible either way.
    """
    if limit <= 0:
        return []
    with transaction.atomic():
        candidates = list(
            Prediction.objects.select_for_update(skip_locked=True)
            .filter(status=Prediction.Status.QUEUED, attempts__lt=MAX_ATTEMPTS)
            .order_by("queued_at").values_list("pk", flat=True)[:limit])
        if candidates:
            _take(Prediction.objects.filter(pk__in=candidates, status=Prediction.Status.QUEUED), token, timezone.now())
    return list(Prediction.objects.filter(pk__in=candidates, status=Prediction.Status.RUNNING,
                                          lease_token=token).values_list("pk", flat=True)) if candidates else []


def claim_batch(prediction_pk, token, size=None, wait_ms=None):
    """This message's prediction plus queued ones up to ``size``; [] when there is nothing to do."""
    size = settings.PNEUMOWEB_BATCH_SIZE if size is None else size
    wait_ms = settings.PNEUMOWEB_BATCH_WAIT_MS if wait_ms is None else wait_ms
    claimed = [prediction_pk] if claim(prediction_pk, token) else []
    # Running rows this same message holds from an earlier try (a retry after a database outage).
    claimed += list(Prediction.objects.filter(status=Prediction.Status.RUNNING, lease_token=token)
                    .exclude(pk__in=claimed).values_list("pk", flat=True)[: max(size - len(claimed), 0)])
    if size > 1:
        claimed += claim_queued(token, size - len(claimed))
        if claimed and len(claimed) < size and wait_ms > 0:
            time.sleep(wait_ms / 1000)
            claimed += claim_queued(token, size - len(claimed))
    return claimed


@contextlib.contextmanager
def lease(prediction_pks, token):
    """Renew the lease of the claimed predictions every PNEUMOWEB_HEARTBEAT_SECONDS until the block ends."""
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.PNEUMOWEB_HEARTBEAT_SECONDS):
                try:
                    Prediction.objects.filter(pk__in=prediction_pks, status=Prediction.Status.RUNNING,
                                              lease_token=token).update(heartbeat_at=timezone.now())
                except DatabaseError:
                    log.warning("Heartbeat of predictions %s could not be written", prediction_pks, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="lease", daemon=True)
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
            held = Prediction.objects.filter(lease_token=task_id, status=Prediction.Status.RUNNING)
            mark_failed([prediction_pk, *held.values_list("pk", flat=True)],
                        f"The job failed: {type(exc).__name__}: {exc}")
        except DatabaseError:  # the reconciler requeues them when the lease has expired
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
        refresh_connection()
        claimed = claim_batch(prediction_pk, token)
    except DATABASE_DOWN as exc:
        raise retry_later(self, exc) from exc
    if not claimed:
        log.info("Prediction %s is finished, gone or leased elsewhere; nothing to do", prediction_pk)
        return
    with lease(claimed, token):
        try:
            predictor, answers = assess(claimed)
            record(token, predictor, answers)
        except SoftTimeLimitExceeded:
            mark_failed(claimed, f"Timed out after {settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT} s.")
        except DATABASE_DOWN as exc:
            raise retry_later(self, exc) from exc


def decode_study(study):
    with study.image.open("rb") as fh:
        return decode_with_tags(fh, max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS,
                                min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE)


def failure_message(exc):
    return f"{type(exc).__name__}: {exc}"


def assess(prediction_pks):
    """(predictor, {pk: Assessment}) for the claimed predictions; a study that cannot be read or run is
    marked failed on its own and left out."""
    from .inference import get_predictor  # torch: the worker's import, never the web tier's

    studies = {p.pk: p.study for p in Prediction.objects.select_related("study").filter(pk__in=prediction_pks)}
    decoded = {}
    # Pillow and pydicom release the GIL while decoding: the files of a batch decode side by side.
    with ThreadPoolExecutor(max_workers=min(4, len(studies)) or 1) as pool:
        futures = {pk: pool.submit(decode_study, study) for pk, study in studies.items()}
    for pk, future in futures.items():
        try:
            decoded[pk] = future.result()
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - one unreadable file fails only its own study
            log.warning("Prediction %s: stored image unreadable: %s", pk, exc)
            mark_failed(pk, failure_message(exc))
    predictor = get_predictor()
    pks = list(decoded)
    items = [(*decoded[pk], float(studies[pk].age_years), studies[pk].view) for pk in pks]
    try:
        return predictor, dict(zip(pks, predictor.assess_batch(items, explain=True)))
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - find the study at fault: run them one by one
        log.exception("Batch of predictions %s failed; running them one by one", pks)
    answers = {}
    for pk, item in zip(pks, items):
        try:
            answers[pk] = predictor.assess_batch([item], explain=True)[0]
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("Prediction %s failed", pk)
            mark_failed(pk, failure_message(exc))
    return predictor, answers


def record(token, predictor, answers):
    """Write every answer (and its heatmaps) still held under this lease, in one transaction.

    A prediction cancelled (or reclaimed after an expired lease) meanwhile keeps its state and its
    heatmap files are deleted; if the write fails, every file it would have named is deleted.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        heatmaps = dict(zip(answers, pool.map(lambda a: save_heatmaps(a.heatmaps) if a.heatmaps else {},
                                              answers.values())))
    unrecorded = []
    try:
        with transaction.atomic():
            for pk, answer in answers.items():
                updated = Prediction.objects.filter(pk=pk, lease_token=token).update_status(
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
                    **heatmaps[pk],
                )
                if not updated:  # cancelled or reclaimed meanwhile: nothing points at its maps
                    unrecorded += heatmaps[pk].values()
    except BaseException:
        delete_files([name for names in heatmaps.values() for name in names.values()])
        raise
    delete_files(unrecorded)


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
