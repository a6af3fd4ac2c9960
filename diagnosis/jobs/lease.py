"""Claiming predictions and holding them: who may run a job, for how long, and how often.

A worker **claims** a prediction with a conditional UPDATE (queued → running, under its lease
token) and renews the **lease** (``heartbeat_at``) while it works. A running job whose lease has
not been renewed for ``PNEUMOWEB_LEASE_SECONDS`` lost its worker (``PredictionQuerySet.lease_expired``,
the one expiry rule): another worker may claim it, and the reconciler queues it again. After
``MAX_ATTEMPTS`` claims a job is failed with ``GAVE_UP`` instead of being tried again.
"""

import contextlib
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import Prediction

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
GAVE_UP = f"Gave up after {MAX_ATTEMPTS} attempts: the worker was lost each time."


def expired(queryset, now=None):
    """The running rows of ``queryset`` whose lease has run out at ``now``."""
    now = now or timezone.now()
    return queryset.lease_expired(heartbeat_before=now - timezone.timedelta(seconds=settings.PNEUMOWEB_LEASE_SECONDS))


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
    this = Prediction.objects.filter(pk=prediction_pk)
    claimable = this.filter(Q(status=Prediction.Status.QUEUED)
                            | Q(status=Prediction.Status.RUNNING, lease_token=token)) | expired(this, now)
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


def requeue_abandoned(now=None):
    """Running jobs whose worker stopped renewing the lease → queued (failed after MAX_ATTEMPTS)."""
    lost = expired(Prediction.objects.all(), now)
    failed = lost.filter(attempts__gte=MAX_ATTEMPTS).update_status(Prediction.Status.FAILED, error=GAVE_UP)
    requeued = lost.filter(attempts__lt=MAX_ATTEMPTS).update_status(
        Prediction.Status.QUEUED, dispatched_at=None, lease_token="")
    return {"requeued": requeued, "failed": failed}


@contextlib.contextmanager
def held(prediction_pks, token):
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


def requeue_after_restore(manifest=None, options=None):
    """After ``manage.py restore``: no worker of this deployment holds a job, so every job the backup
    caught running or sent goes back to the queue at once, for the reconciler's first round to send."""
    running = Prediction.objects.filter(status=Prediction.Status.RUNNING).update_status(
        Prediction.Status.QUEUED, dispatched_at=None, lease_token="")
    sent = Prediction.objects.filter(status=Prediction.Status.QUEUED).exclude(dispatched_at=None).update(
        dispatched_at=None)
    log.info("Restore: %d running and %d sent jobs queued again", running, sent)
    return (f"Queued again {running + sent} job(s) the backup caught in flight ({running} running, {sent} sent):"
            " start the worker to finish them.")
