"""Getting every accepted study to a final state: sending jobs, and finding the ones that got lost.

The prediction row is a transactional outbox: it is committed together with the study, and
``dispatch`` hands its job to the broker after the commit. A broker that is down at that moment
does not fail the upload — the row stays queued with no ``dispatched_at`` — and the
**reconciler** — periodic jobs registered here and run by the one scheduler (``core/periodic.py``:
a thread in every worker's main process and in the DICOM listener), or ``manage.py reconcile`` —
keeps the broker honest:

1. every ``PNEUMOWEB_RECONCILE_SECONDS`` (job ``requeue-and-resend``): a running job whose lease
   has not been renewed for ``PNEUMOWEB_LEASE_SECONDS`` lost its worker: it goes back to queued (or to failed after ``MAX_ATTEMPTS``: ``lease.requeue_abandoned``);
2. a queued job never sent, or sent more than ``PNEUMOWEB_RESEND_AFTER_SECONDS`` ago and still not
   started (a broker that lost its data, a restarted Redis), is sent again — a duplicate message is
   harmless, the job's claim is idempotent;
3. every ``PNEUMOWEB_SWEEP_SECONDS`` (jobs ``sweep-orphan-files``, ``forget-idempotency-keys``): files
   under the media folders that no row names and that are older than
   ``PNEUMOWEB_ORPHAN_GRACE_SECONDS`` (a process killed between writing a file and its row) are deleted,
   and so are Idempotency-Keys past ``PNEUMOWEB_IDEMPOTENCY_TTL_HOURS``. (The audit trail's sealing is
   the ``audit`` app's own job.)

Several workers may reconcile at once: every step is a conditional UPDATE or an idempotent send.
"""

import logging

from django.conf import settings
from django.db import DatabaseError
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


def requeue_and_resend():
    """Requeue jobs whose worker was lost; send again the ones the broker lost."""
    done = requeue_abandoned()
    done["resent"] = resend_lost()
    if done["requeued"] or done["failed"] or done["resent"]:
        log.info("Reconciled predictions: %s", done)  # the line docs/OPERATIONS.md tells operators to look for
    return done


def forget_idempotency_keys():
    """Forget Idempotency-Keys past PNEUMOWEB_IDEMPOTENCY_TTL_HOURS."""
    return {"forgotten": IdempotentRequest.forget_expired()}


def sweep_orphan_files():
    """Delete stored files no row names, past PNEUMOWEB_ORPHAN_GRACE_SECONDS."""
    return {"deleted": len(sweep_orphans())}


def reconcile(*, sweep=True):
    """All of the steps above at once (``manage.py reconcile``); returns what it did."""
    refresh_connection()
    done = requeue_and_resend()
    if sweep:
        done["orphans_deleted"] = sweep_orphan_files()["deleted"]
        done["idempotency_keys_forgotten"] = forget_idempotency_keys()["forgotten"]
        done["audit_seals"] = len(seal_due())
    return done
