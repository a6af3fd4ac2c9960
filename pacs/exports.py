"""Sending each result back to the PACS: the export log is the outbox.

``queue_exports`` writes one ``Export`` row per result object (SR, and the heatmap's secondary
capture when there is a map), destination and revision, for every finished prediction of an
instance that came over DICOM — and an amended SR when a reviewer's verdict is newer than what
was sent. Rows are created in one transaction with the instance's ``answered_at``; the unique
(prediction, destination, kind, revision) makes a second housekeeper's attempt a no-op.

``send_due`` sends pending rows whose time has come. A row is claimed by one conditional UPDATE
(attempts + 1, next attempt pushed past the send's timeout) before it is sent, so two housekeepers
never send it at once; the object is rebuilt from the database each time with the row's own SOP
Instance UID, so a repeat after a crash between "sent" and "recorded" is the same instance (a PACS
keeps one copy). Retries back off (doubling from ``PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS``) for
what may pass — connection errors, HTTP 5xx/408/429, DICOM 0xA7xx — and stop at once on what will
not (association rejected, HTTP 4xx, DICOM 0xA9xx/0xCxxx) or after ``PNEUMOWEB_DICOM_EXPORT_ATTEMPTS``.
The heatmap capture is drawn only from an X-ray and a heatmap that passed their integrity check
(``diagnosis.integrity``): a changed file fails its export at once, saying so in ``last_error``
(retrying would send nothing better), and is logged and audited where it was found.
"""

import logging

import numpy as np
import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from pydicom.uid import generate_uid

from diagnosis.integrity import StoredFileChanged
from diagnosis.models import Prediction
from diagnosis.reports import overlay_picture

from . import send as sender
from .dicom_out import Result, build_secondary_capture, build_sr
from .ingest import UNREADABLE
from .models import Destination, Export, Instance

log = logging.getLogger(__name__)


def latest_outcome(study):
    return study.predictions.filter(status__in=Prediction.OUTCOMES).order_by("-finished_at", "-pk").first()


def revision_of(prediction):
    return prediction.reviewed_at.isoformat() if prediction.reviewed_at else ""


def queue_exports(now=None):
    """Queue what each destination has not been given yet; returns the number of rows created."""
    now = now or timezone.now()
    destinations = list(Destination.objects.filter(enabled=True))
    if not destinations:
        return 0
    due = Instance.objects.filter(outcome=Instance.Outcome.SUBMITTED, study__predictions__status__in=Prediction.OUTCOMES) \
        .filter(Q(answered_at__isnull=True) | Q(study__predictions__reviewed_at__gt=F("answered_at"))) \
        .select_related("study").distinct()
    created = 0
    for instance in due[:200]:
        prediction = latest_outcome(instance.study)
        revision = revision_of(prediction)
        with transaction.atomic():
            for destination in destinations:
                kinds = [Export.Kind.SR]
                if not revision and prediction.heatmap:
                    kinds.append(Export.Kind.SC)
                for kind in kinds:
                    try:
                        with transaction.atomic():
                            Export.objects.create(
                                prediction=prediction, instance=instance, destination=destination, kind=kind,
                                revision=revision, sop_instance_uid=generate_uid(),
                                series_instance_uid=_series_uid(prediction, destination, kind))
                            created += 1
                    except IntegrityError:
                        pass  # queued already (another housekeeper, or a retried round)
            Instance.objects.filter(pk=instance.pk).update(answered_at=now)
    return created + queue_not_assessed(destinations, now)


def queue_not_assessed(destinations, now):
    """An SR "not assessed: <reason>" for each frontal chest film whose image could not be read."""
    created = 0
    unread = Instance.objects.filter(outcome=Instance.Outcome.SKIPPED, skip_reason__startswith=UNREADABLE,
                                     answered_at__isnull=True)
    for instance in unread[:200]:
        with transaction.atomic():
            for destination in destinations:
                try:
                    with transaction.atomic():
                        Export.objects.create(prediction=None, instance=instance, destination=destination,
                                              kind=Export.Kind.SR, revision="", sop_instance_uid=generate_uid(),
                                              series_instance_uid=generate_uid())
                        created += 1
                except IntegrityError:
                    pass  # queued already
            Instance.objects.filter(pk=instance.pk).update(answered_at=now)
    return created


def _series_uid(prediction, destination, kind):
    # One series per (prediction, destination, kind): an amended SR joins its predecessor's series.
    earlier = Export.objects.filter(prediction=prediction, destination=destination, kind=kind).first()
    return earlier.series_instance_uid if earlier else generate_uid()


def send_due(now=None, limit=50):
    """Send pending exports whose time has come; returns {sent, retrying, failed}."""
    now = now or timezone.now()
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    for pk in Export.objects.due(now).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        counts[send_one(pk, now=now)] += 1
    return counts


def send_one(pk, *, now=None):
    now = now or timezone.now()
    hold = timezone.timedelta(seconds=settings.PNEUMOWEB_DICOM_SEND_TIMEOUT_SECONDS * 2 + 5)
    claimed = Export.objects.filter(pk=pk, status=Export.Status.PENDING, next_attempt_at__lte=now).update(
        attempts=F("attempts") + 1, next_attempt_at=now + hold)
    if not claimed:
        return "retrying"  # another housekeeper has it
    export = Export.objects.select_related("prediction__study", "instance", "destination").get(pk=pk)
    try:
        dataset = build(export)
    except StoredFileChanged as exc:
        outcome = sender.Outcome(sent=False, retry=False, error=f"not sent: the {exc.field_name} of "
                                                                f"{exc.instance._meta.verbose_name} {exc.instance.pk} "
                                                                "failed its integrity check (not the file stored)")
    except Exception as exc:  # noqa: BLE001 - a bug or a missing file: recorded on the row, never retried blindly
        log.exception("Could not build %s", export)
        outcome = sender.Outcome(sent=False, retry=False, error=f"could not build the object: {type(exc).__name__}")
    else:
        outcome = sender.send(dataset, as_destination(export.destination))
    return record(export, outcome, now=now)


def record(export, outcome, *, now):
    if outcome.sent:
        # The send's own time, not the round's start (a round sends many, each taking seconds).
        Export.objects.filter(pk=export.pk).update(status=Export.Status.SENT, sent_at=timezone.now(), last_error="")
        log.info("Sent %s", export)
        return "sent"
    if outcome.retry and export.attempts < settings.PNEUMOWEB_DICOM_EXPORT_ATTEMPTS:
        delay = settings.PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS * 2 ** (export.attempts - 1)
        Export.objects.filter(pk=export.pk).update(
            last_error=outcome.error, next_attempt_at=now + timezone.timedelta(seconds=delay))
        log.warning("Sending %s failed (attempt %d), again in %.0f s: %s", export, export.attempts, delay,
                    outcome.error)
        return "retrying"
    Export.objects.filter(pk=export.pk).update(status=Export.Status.FAILED, last_error=outcome.error)
    log.error("Sending %s failed for good after %d attempt(s): %s", export, export.attempts, outcome.error)
    return "failed"


def as_destination(destination):
    return sender.Destination(
        name=destination.name, kind=destination.kind, url=destination.url.rstrip("/"),
        ae_title=destination.ae_title, host=destination.host, port=destination.port or 0,
        calling_ae=settings.PNEUMOWEB_DICOM_AE_TITLE, timeout=settings.PNEUMOWEB_DICOM_SEND_TIMEOUT_SECONDS)


def build(export):
    """The DICOM object of this row, from the database as it is now."""
    source = pydicom.Dataset.from_json(export.instance.header)
    prediction = export.prediction
    if prediction is None:  # a film that could not be read: the SR says so, and why
        return build_sr(source=source, result=not_assessed(export.instance), sop_instance_uid=export.sop_instance_uid,
                        series_instance_uid=export.series_instance_uid)
    if export.kind == Export.Kind.SC:
        return build_secondary_capture(
            source=source, overlay_rgb=overlay(prediction), sop_instance_uid=export.sop_instance_uid,
            series_instance_uid=export.series_instance_uid, result=result_of(prediction))
    previous = Export.objects.filter(
        prediction=prediction, destination=export.destination, kind=Export.Kind.SR,
        created_at__lt=export.created_at).exclude(pk=export.pk).order_by("-created_at").first()
    return build_sr(
        source=source, result=result_of(prediction), sop_instance_uid=export.sop_instance_uid,
        series_instance_uid=export.series_instance_uid,
        instance_number=Export.objects.filter(prediction=prediction, destination=export.destination,
                                              kind=Export.Kind.SR, created_at__lte=export.created_at).count(),
        # build_sr fills the SR class and the source's study in; the series is the earlier SR's own.
        previous=({"SOPInstanceUID": previous.sop_instance_uid, "SeriesInstanceUID": previous.series_instance_uid}
                  if previous else None))


def not_assessed(instance):
    """The Result of a film whose image could not be read: no model ran, the reason is the ingest's."""
    return Result(label="", probability=None, threshold=None, population="", borderline=False,
                  model_name="pneumoweb", model_version="none", ood=True, ood_reason=instance.skip_reason,
                  warnings=(), not_assessed=True)


def result_of(prediction):
    review = ""
    if prediction.review_verdict == Prediction.Verdict.AGREE:
        review = f"Reviewed: the reviewer agreed with {prediction.label}."
    elif prediction.review_verdict == Prediction.Verdict.DISAGREE:
        review = f"Reviewed: the reviewer disagreed; corrected label {prediction.review_label}."
    if review and prediction.review_comment:
        review += f" Comment: {prediction.review_comment}"
    refused = prediction.status == Prediction.Status.REJECTED
    return Result(
        label="" if refused else prediction.label,
        probability=None if refused else prediction.probability,
        threshold=prediction.threshold,
        population=prediction.population,
        borderline=prediction.borderline,
        model_name=prediction.model_name or "pneumoweb",
        model_version=prediction.model_sha256[:12] or "unknown",
        ood=refused,
        ood_reason=prediction.ood_reason,
        warnings=tuple(str(warning) for warning in prediction.warnings or ()),
        review=review,
        heatmap_shown=prediction.shows_heatmap,
        operating_point=prediction.operating_point,
    )


def overlay(prediction):
    """The capture's picture at the film's own size: the PDF's (``diagnosis.reports.overlay_picture``), as an array."""
    return np.asarray(overlay_picture(prediction))
