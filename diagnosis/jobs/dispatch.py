"""Getting every accepted study to a final state: sending jobs, and finding the ones that got lost.

The prediction row is a transactional outbox: it is committed together with the study, and
``dispatch`` hands its job to the broker after the commit. A broker that is down at that moment
does not fail the upload — the row stays queued with no ``dispatched_at`` — and the
**reconciler**, a thread in every worker's main process (and ``manage.py reconcile``), keeps
the broker honest every ``PNEUMOWEB_RECONCILE_SECONDS``:

1. a running job whose lease has not been renewed for ``PNEUMOWEB_LEASE_SECONDS`` lost its worker:
   it goes back to queued (or to failed after ``MAX_ATTEMPTS``: ``lease.requeue_abandoned``);
2. a queued job never sent, or sent more than ``PNEUMOWEB_RESEND_AFTER_SECONDS`` ago and still not
   started (a broker that lost its data, a restarted Redis), is sent again — a duplicate message is
   harmless, the job's claim is idempotent;
3. files under the media folders that no row names and that are older than
   ``PNEUMOWEB_ORPHAN_GRACE_SECONDS`` (a process killed between writing a file and its row) are deleted,
   and so are Idempotency-Keys past ``PNEUMOWEB_IDEMPOTENCY_TTL_HOURS``; with them (once a minute),
   the audit entries older than ``PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS`` are sealed (``audit.seals``).

Several workers may reconcile at once: every step is a conditional UPDATE or an idempotent send.
"""

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from audit.seals import seal_due
from core.connections import refresh_connection
from core.stored_files import sweep_unnamed

from ..models import IdempotentRequest, Prediction
from .lease import requeue_abandoned
from .tasks import run_prediction

log = logging.getLogger(__name__)


def dispatch(prediction_pk):
    """Hand the job to the broker; True when sent. A broker that is down leaves it to the reconciler."""
    try:
        run_prediction.apply_async(kwargs={"prediction_pk": prediction_pk}, retry=False)
    except Exception:  # noqa: BLE001 - kombu/redis raise many types; the job is safe in the database
        log.warning("Could not send prediction %s to the broker; the reconciler will send it", prediction_pk,
                    exc_info=True)
        return False
    try:
        Prediction.objects.filter(pk=prediction_pk, status=Prediction.Status.QUEUED).update(
            dispatched_at=timezone.now())
    except DatabaseError:  # sent all the same; at worst the reconciler sends a harmless duplicate
        log.warning("Could not record that prediction %s was sent", prediction_pk, exc_info=True)
    return True


def resend_lost(now=None, limit=500):
    """Queued jobs never sent, or sent long ago and not started → sent again. Returns how many."""
    now = now or timezone.now()
    due = Prediction.objects.dispatch_due(
        sent_before=now - timezone.timedelta(seconds=settings.PNEUMOWEB_RESEND_AFTER_SECONDS))
    sent = 0
    for pk in due.order_by("queued_at").values_list("pk", flat=True)[:limit]:
        if not dispatch(pk):
            break  # the broker is down: try again next round
        sent += 1
    return sent


def sweep_orphans(now=None):
    """Delete stored files no row names, older than the grace period, under this app's folders. Returns their names."""
    return sweep_unnamed(("studies", "heatmaps", "reports"), now=now)


def reconcile(*, sweep=True):
    """One round of the three steps above; returns what it did."""
    refresh_connection()
    done = requeue_abandoned()
    done["resent"] = resend_lost()
    if sweep:
        done["orphans_deleted"] = len(sweep_orphans())
        done["idempotency_keys_forgotten"] = IdempotentRequest.forget_expired()
        done["audit_seals"] = len(seal_due())
    if done["requeued"] or done["failed"] or done["resent"]:
        log.info("Reconciled predictions: %s", done)
    return done


class Reconciler:
    """``reconcile()`` every PNEUMOWEB_RECONCILE_SECONDS on a daemon thread; a round that fails is logged and retried."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if self._thread is not None or settings.PNEUMOWEB_RECONCILE_SECONDS <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self):
        rounds = 0
        while not self._stop.wait(settings.PNEUMOWEB_RECONCILE_SECONDS):
            try:
                # The file sweep walks the media folders: once a minute is plenty.
                reconcile(sweep=rounds % max(1, round(60 / settings.PNEUMOWEB_RECONCILE_SECONDS)) == 0)
            except Exception:  # noqa: BLE001 - a database or broker outage: try again next round
                log.warning("Reconciliation round failed; retrying in %s s", settings.PNEUMOWEB_RECONCILE_SECONDS,
                            exc_info=True)
            finally:
                connection.close()
            rounds += 1


reconciler = Reconciler()
