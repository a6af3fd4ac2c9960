"""Closing an imaging study once it goes quiet, and submitting its frontal chest images to the model.

A modality sends a study's images over seconds (one association each, or several); assessing the
first image alone would miss a better frontal film that comes next. So nothing is submitted until
no instance of the study has arrived for ``PNEUMOWEB_PACS_QUIET_SECONDS``; then each waiting
instance becomes one ``diagnosis.Study`` with a queued prediction, through ``submit_study`` — the
same write path as an upload (one transaction, job sent on commit). Each SOP instance is submitted
at most once: the claim on the imaging study is one conditional UPDATE, so two housekeepers
cannot both submit it.

A held image is checked against the sha256 recorded when it was received (``diagnosis.integrity``)
before it is submitted: one that changed is not assessed — the instance is recorded as skipped,
its file kept for an administrator (``manage.py verify_files`` lists it) — and the study's other
images go on.
"""

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from diagnosis.images import DICOM_VIEWS, check_upload
from diagnosis.integrity import StoredFileChanged, open_verified
from diagnosis.models import Patient, Study
from diagnosis.services import submit_study

from .ingest import pacs_account
from .models import ImagingStudy, Instance

log = logging.getLogger(__name__)

CHANGED = "the held image failed its integrity check: it is not the file that was received"
MISSING = "the held image is missing from the media folder"


def close_quiet_studies(now=None):
    """Submit every study quiet for long enough; returns the number of instances submitted."""
    now = now or timezone.now()
    quiet_before = now - timezone.timedelta(seconds=settings.PNEUMOWEB_PACS_QUIET_SECONDS)
    submitted = 0
    for pk in ImagingStudy.objects.filter(assessed_at__isnull=True, last_received_at__lte=quiet_before) \
            .values_list("pk", flat=True)[:100]:
        try:
            submitted += submit_waiting(pk, now=now)
        except Exception:  # noqa: BLE001 - one study's fault must not stop the others, nor the exports after
            log.exception("Could not submit imaging study %s; it is tried again next round", pk)
    return submitted


def submit_waiting(imaging_study_pk, *, now=None):
    """Claim the study (if still unassessed) and submit its waiting instances; returns how many."""
    now = now or timezone.now()
    account = pacs_account()
    done = []
    with transaction.atomic():
        # The patient first, as an erasure locks it (diagnosis/erasure.py) before it deletes these rows:
        # one order of locks, so the two cannot deadlock.
        patient_pk = ImagingStudy.objects.filter(pk=imaging_study_pk).values_list("patient_id", flat=True).first()
        if patient_pk is None or not Patient.objects.select_for_update().filter(pk=patient_pk).exists():
            return 0  # erased meanwhile
        if not ImagingStudy.objects.filter(pk=imaging_study_pk, assessed_at__isnull=True).update(assessed_at=now):
            return 0  # another housekeeper took it
        imaging_study = ImagingStudy.objects.select_related("patient").get(pk=imaging_study_pk)
        waiting = Instance.objects.select_for_update().filter(
            imaging_study=imaging_study, outcome=Instance.Outcome.WAITING)
        skipped = [f"{other.modality or 'an instance'} {other.view_position}".strip() + f" ({other.skip_reason})"
                   for other in imaging_study.instances.filter(outcome=Instance.Outcome.SKIPPED)]
        skipped_note = [f"Also in this DICOM study, not assessed: {'; '.join(skipped)}."] if skipped else []
        for instance in waiting:
            try:
                held = open_verified(instance, "pixels")
            except StoredFileChanged:  # logged and audited; the file stays as evidence
                _skip(instance, CHANGED)
                continue
            except FileNotFoundError:  # e.g. restored from a backup that missed it: verify_files lists it
                log.error("The held image of instance %s is missing; it is not assessed", instance.pk)
                _skip(instance, MISSING)
                continue
            with held as stored:
                try:
                    checked = check_upload(File(stored, name="instance.png"))
                except ValidationError as refused:
                    _skip(instance, f"the held image cannot be assessed: {' '.join(refused.messages)}")
                    continue
                study, _ = submit_study(
                    patient=imaging_study.patient, checked_image=checked, age_years=instance.age_years,
                    uploaded_by=account, view=_view(instance), notes=f"Received over DICOM: {instance.received_from}.",
                    source_notes=[*instance.notes, f"SOP Instance UID {instance.sop_instance_uid}, received "
                                  f"{instance.received_at:%Y-%m-%d %H:%M:%S %Z}.", *skipped_note])
            instance.study, instance.outcome = study, Instance.Outcome.SUBMITTED
            instance.save(update_fields=["study", "outcome"])
            done.append(instance)
        # The study keeps its own copy of the pixels: the held PNG goes once the rows are committed.
        transaction.on_commit(lambda: [_drop_pixels(instance) for instance in done])
    if done:
        log.info("Submitted %d image(s) of study %s", len(done), imaging_study.study_instance_uid)
    return len(done)


def _skip(instance, reason):
    instance.outcome, instance.skip_reason = Instance.Outcome.SKIPPED, reason[:300]
    instance.save(update_fields=["outcome", "skip_reason"])


def _view(instance):
    return DICOM_VIEWS.get(instance.view_position.upper(), Study.View.UNKNOWN)


def _drop_pixels(instance):
    instance.pixels.delete(save=False)
    Instance.objects.filter(pk=instance.pk).update(pixels="")
