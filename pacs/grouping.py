"""Closing an imaging study once it goes quiet, and submitting its frontal chest images to the model.

A modality sends a study's images over seconds (one association each, or several); assessing the
first image alone would miss a better frontal film that comes next. So nothing is submitted until
no instance of the study has arrived for ``PNEUMOWEB_PACS_QUIET_SECONDS``; then each waiting
instance becomes one ``diagnosis.Study`` with a queued prediction, through ``submit_study`` — the
same write path as an upload (one transaction, job sent on commit). Each SOP instance is submitted
at most once: the claim on the imaging study is one conditional UPDATE, so two housekeepers
cannot both submit it.
"""

import logging

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from diagnosis.images import DICOM_VIEWS, check_upload
from diagnosis.models import Study
from diagnosis.services import submit_study

from .ingest import pacs_account
from .models import ImagingStudy, Instance

log = logging.getLogger(__name__)


def close_quiet_studies(now=None):
    """Submit every study quiet for long enough; returns the number of instances submitted."""
    now = now or timezone.now()
    quiet_before = now - timezone.timedelta(seconds=settings.PNEUMOWEB_PACS_QUIET_SECONDS)
    submitted = 0
    for pk in ImagingStudy.objects.filter(assessed_at__isnull=True, last_received_at__lte=quiet_before) \
            .values_list("pk", flat=True)[:100]:
        submitted += submit_waiting(pk, now=now)
    return submitted


def submit_waiting(imaging_study_pk, *, now=None):
    """Claim the study (if still unassessed) and submit its waiting instances; returns how many."""
    now = now or timezone.now()
    account = pacs_account()
    done = []
    with transaction.atomic():
        if not ImagingStudy.objects.filter(pk=imaging_study_pk, assessed_at__isnull=True).update(assessed_at=now):
            return 0  # another housekeeper took it
        imaging_study = ImagingStudy.objects.select_related("patient").get(pk=imaging_study_pk)
        waiting = Instance.objects.select_for_update().filter(
            imaging_study=imaging_study, outcome=Instance.Outcome.WAITING)
        skipped = [f"{other.modality or 'an instance'} {other.view_position}".strip() + f" ({other.skip_reason})"
                   for other in imaging_study.instances.filter(outcome=Instance.Outcome.SKIPPED)]
        skipped_note = [f"Also in this DICOM study, not assessed: {'; '.join(skipped)}."] if skipped else []
        for instance in waiting:
            with instance.pixels.open("rb") as stored:
                checked = check_upload(File(stored, name="instance.png"))
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


def _view(instance):
    return DICOM_VIEWS.get(instance.view_position.upper(), Study.View.UNKNOWN)


def _drop_pixels(instance):
    instance.pixels.delete(save=False)
    Instance.objects.filter(pk=instance.pk).update(pixels="")
