"""Celery jobs. Prediction state lives in the database; every job is idempotent."""

import logging

from celery import Task, shared_task
from celery.signals import worker_process_init
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models import F
from django.utils import timezone

from ml.decode import decode_with_tags

from .models import Prediction, heatmap_upload_to

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@worker_process_init.connect
def _load_model_in_new_worker_process(**kwargs):
    # Each prefork child loads the model (and torch) once, before its first job. The web tier
    # imports this module to send jobs and must not load torch: every model import here is lazy.
    from .inference import get_predictor

    get_predictor()


def mark_failed(prediction_pk, message):
    """Unfinished → failed. Never touches a finished prediction."""
    return Prediction.objects.filter(
        pk=prediction_pk, status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
    ).update(status=Prediction.Status.FAILED, error=message[:2000], finished_at=timezone.now())


def claim(prediction_pk):
    """queued (or running, after a lost worker) → running; False when there is nothing to do."""
    unfinished = Prediction.objects.filter(
        pk=prediction_pk, status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
    )
    if unfinished.filter(attempts__gte=MAX_ATTEMPTS).exists():
        mark_failed(prediction_pk, f"Gave up after {MAX_ATTEMPTS} attempts: the worker was lost each time.")
        return False
    return bool(
        unfinished.update(
            status=Prediction.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
        )
    )


class PredictionTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Also called by the worker's main process when the hard time limit kills a job.
        prediction_pk = (kwargs or {}).get("prediction_pk")
        if prediction_pk is not None:
            mark_failed(prediction_pk, f"The job failed: {type(exc).__name__}: {exc}")


@shared_task(
    base=PredictionTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.PNEUMOWEB_TASK_HARD_TIME_LIMIT,
)
def run_prediction(self, *, prediction_pk):
    if not claim(prediction_pk):
        log.info("Prediction %s is finished or gone; nothing to do", prediction_pk)
        return
    try:
        prediction = Prediction.objects.select_related("study").get(pk=prediction_pk)
        study = prediction.study
        with study.image.open("rb") as fh:
            image, info = decode_with_tags(
                fh,
                max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS,
                min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE,
            )
        from .inference import get_predictor  # torch: the worker's import, never the web tier's

        predictor = get_predictor()
        answer = predictor.assess(image, info, age=float(study.age_years), view=study.view, explain=True)
        heatmaps = save_heatmaps(answer.heatmaps) if answer.heatmaps else {}
    except SoftTimeLimitExceeded:
        mark_failed(prediction_pk, f"Timed out after {settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT} s.")
        return
    except Exception as exc:
        log.exception("Prediction %s failed", prediction_pk)
        mark_failed(prediction_pk, f"{type(exc).__name__}: {exc}")
        return
    # The status filter lets a cancellation that arrived meanwhile win.
    updated = Prediction.objects.filter(pk=prediction_pk, status=Prediction.Status.RUNNING).update(
        status=Prediction.Status.REJECTED if answer.ood else Prediction.Status.SUCCEEDED,
        label=answer.label,
        probability=answer.probability,
        ood=answer.ood,
        ood_reason=answer.ood_reason,
        threshold=predictor.threshold,
        model_name=predictor.name,
        model_sha256=predictor.weights_sha256,
        finished_at=timezone.now(),
        error="",
        warnings=answer.warnings,
        **heatmaps,
    )
    if not updated:  # cancelled meanwhile: nothing points at the maps
        for name in heatmaps.values():
            heatmap_storage().delete(name)


def heatmap_storage():
    return Prediction._meta.get_field("heatmap").storage


def save_heatmaps(maps):
    """Store each map as a PNG; returns {field name: stored name}."""
    from ml.explain import heatmap_png
    stored = {}
    for branch, field in Prediction.HEATMAP_BRANCHES.items():
        heat = getattr(maps, branch)
        if heat is not None:
            stored[field] = heatmap_storage().save(heatmap_upload_to(None, "map.png"), ContentFile(heatmap_png(heat)))
    return stored
