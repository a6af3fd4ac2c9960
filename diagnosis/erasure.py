"""Erasing a patient's data where the law asks: every study, file, prediction and report, and the patient.

Contract
- ``request_erasure(patient, by=, reason=)``: an administrator asks, with a reason. Without the
  two-person rule (``PNEUMOWEB_ERASURE_TWO_PERSON``, off by default) it is carried out at once;
  with it, another administrator must ``approve()``.
- Refused (``ErasureRefused``, a message for people) while any of the patient's predictions is
  queued or running: the worker would write heatmaps for rows being deleted. Finish or cancel first.
- One transaction deletes the rows (each deletion on the audit trail, by pseudonym); the files go
  after the commit, so a failure leaves nothing half erased. A process killed between the two
  leaves files no row names, which the reconciler's sweep deletes (``jobs/dispatch.sweep_orphans``).
  Apps above this one (PACS) delete their own rows for the patient on the ``patient_erasing`` signal
  and return the files to delete.
- The upload path locks the patient row (``services.submit_study``), so an erasure and an upload
  for the same patient cannot interleave: the upload either comes first (and the erasure is
  refused as running) or finds the patient gone (404).
- Each erasure is appended to ``PNEUMOWEB_ERASURE_LOG`` (JSON lines, outside the database and its
  backups; no default: erasing is refused until it is set, since a log inside the var folder dies
  with the machine). ``manage.py restore`` re-applies every erasure in it (``reapply_logged``), so a
  backup older than an erasure does not bring the patient back, and refuses to run without a log
  unless the operator says no patient was erased since the backup (``check_log``).

The audit trail is not touched: it never held names, MRNs or birth dates (``audit/pseudonyms.py``),
so its seals stay valid through an erasure.
"""

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from audit.pseudonyms import patient_pseudonym
from core.backup import BackupError

from .models import Erasure, IdempotentRequest, Patient, Prediction, Report, Study

log = logging.getLogger(__name__)

# Sent inside the erasure's transaction with ``patient`` and ``studies`` (their keys); a receiver
# deletes its own rows that refer to them and returns the names of stored files to delete.
patient_erasing = Signal()

RUNNING = "A study of this patient is still being assessed: erase the data once its prediction has finished."
NO_LOG = ("PNEUMOWEB_ERASURE_LOG is not set: an erasure must be logged in a file kept beside the backups, off this "
          "machine, or a restore would bring the patient back (docs/OPERATIONS.md). Set it, then erase.")


class ErasureRefused(Exception):
    """Why an erasure cannot be done now; the message is for the administrator."""


def request_erasure(patient, *, by, reason):
    reason = (reason or "").strip()
    if not reason:
        raise ErasureRefused("Give the reason the erasure is required.")
    if log_path() is None:
        raise ErasureRefused(NO_LOG)
    if _running(patient):
        raise ErasureRefused(RUNNING)
    with transaction.atomic():  # without the two-person rule, a refused erasure leaves no request behind
        try:
            with transaction.atomic():  # a savepoint: the refusal below leaves the transaction usable
                erasure = Erasure.objects.create(
                    patient_pk=patient.pk, patient_pseudonym=patient_pseudonym(patient.pk),
                    patient_created_at=patient.created_at, reason=reason, requested_by=by)
        except IntegrityError:
            raise ErasureRefused("An erasure of this patient is already waiting for approval.") from None
        if settings.PNEUMOWEB_ERASURE_TWO_PERSON:
            return erasure
        return carry_out(erasure, approved_by=by)


def approve(erasure, *, by):
    if erasure.status != Erasure.Status.REQUESTED:
        raise ErasureRefused("This erasure is not waiting for approval.")
    if log_path() is None:
        raise ErasureRefused(NO_LOG)
    if settings.PNEUMOWEB_ERASURE_TWO_PERSON and by.pk == erasure.requested_by_id:
        raise ErasureRefused("A second administrator must approve an erasure they did not request.")
    return carry_out(erasure, approved_by=by)


def _running(patient):
    return Prediction.objects.filter(study__patient=patient).unfinished().exists()


def carry_out(erasure, *, approved_by, cancel_running=False, logged=True):
    """Delete the patient's rows in one transaction, their files after it; returns the erasure, done."""
    with transaction.atomic():
        patient = Patient.objects.select_for_update().filter(pk=erasure.patient_pk).first()
        if patient is None or patient.created_at != erasure.patient_created_at:
            raise ErasureRefused("This patient's data is already erased.")
        if cancel_running:
            # After a restore: no worker holds these jobs yet.
            Prediction.objects.filter(study__patient=patient).unfinished().update_status(Prediction.Status.CANCELLED)
        elif _running(patient):
            raise ErasureRefused(RUNNING)
        studies = list(Study.objects.filter(patient=patient).values_list("pk", flat=True))
        predictions = Prediction.objects.filter(study__patient=patient)
        reports = Report.objects.filter(prediction__study__patient=patient)
        files = _stored_files(Study.objects.filter(patient=patient), predictions, reports)
        for _, answer in patient_erasing.send(sender=Patient, patient=patient, studies=studies):
            files.extend(answer or ())
        erased = {"studies": studies, "predictions": list(predictions.values_list("pk", flat=True)),
                  "reports": list(reports.values_list("pk", flat=True))}
        _forget_replays(patient, erased["predictions"])
        for model, pks in ((Patient, [patient.pk]), (Study, studies), (Prediction, erased["predictions"]),
                           (Report, erased["reports"])):
            rename_in_admin_log(model, pks)
        # Children first: every foreign key to the patient's rows is PROTECT.
        reports.delete()
        predictions.delete()
        Study.objects.filter(pk__in=studies).delete()
        patient.delete()
        erased["files"] = len(files)
        erasure.status, erasure.done_at, erasure.approved_by, erasure.erased = (
            Erasure.Status.DONE, timezone.now(), approved_by, erased)
        erasure.save()
        transaction.on_commit(lambda: _after_commit(erasure, files, logged=logged))
    return erasure


def rename_in_admin_log(model, pks):
    """Django's admin history names objects by ``str()`` ("Jane Doe (MRN-1)"): erased ones by their kind and id."""
    from django.contrib.admin.models import LogEntry as AdminLogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(model)
    for pk in pks:
        AdminLogEntry.objects.filter(content_type=content_type, object_id=str(pk)).update(
            object_repr=f"{model._meta.verbose_name} {pk} (erased)")


def _forget_replays(patient, prediction_pks):
    """Answers kept for Idempotency-Key replays (a day at most) that show the erased predictions."""
    marks = [f"/api/predictions/{pk}/" for pk in prediction_pks]
    for replay in IdempotentRequest.objects.filter(user_id=patient.owner_id).exclude(response=None):
        text = json.dumps(replay.response)
        if any(mark in text for mark in marks):
            replay.delete()


def _stored_files(studies, predictions, reports):
    names = [name for name in studies.values_list("image", flat=True) if name]
    for field in Prediction.HEATMAP_BRANCHES.values():
        names.extend(name for name in predictions.values_list(field, flat=True) if name)
    names.extend(name for name in reports.values_list("pdf", flat=True) if name)
    return names


def _after_commit(erasure, files, *, logged):
    root = Path(settings.MEDIA_ROOT)
    for name in files:
        try:
            (root / name).unlink(missing_ok=True)
        except OSError:
            # Left for the reconciler's orphan sweep: no row names the file any more.
            log.warning("Erasure %s: could not delete %s", erasure.pk, name, exc_info=True)
    if logged:
        append_to_log(erasure)
    log.info("Erasure %s of patient %s done: %s", erasure.pk, erasure.patient_pseudonym,
             {k: len(v) if isinstance(v, list) else v for k, v in erasure.erased.items()})


def log_path():
    """Where erasures are logged (``PNEUMOWEB_ERASURE_LOG``), or None when it is not set."""
    value = settings.PNEUMOWEB_ERASURE_LOG
    return Path(value) if value else None


def log_line(erasure):
    # No personal data: keys, the pseudonym, and the reason (the form and the command ask for a
    # reason without personal data: a legal basis, a request reference).
    return {"erasure": erasure.pk, "patient_pk": erasure.patient_pk, "pseudonym": erasure.patient_pseudonym,
            "patient_created_at": erasure.patient_created_at.isoformat(), "done_at": erasure.done_at.isoformat(),
            "requested_by": erasure.requested_by_id, "approved_by": erasure.approved_by_id, "reason": erasure.reason}


def append_to_log(erasure):
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (json.dumps(log_line(erasure), sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path=None):
    """The logged erasures, oldest first; ``ValueError`` names a line that cannot be read."""
    path = Path(path) if path else log_path()
    try:
        lines = path.read_text().splitlines() if path else []
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            int(entry["patient_pk"]), datetime.fromisoformat(entry["patient_created_at"])  # what reapplying reads
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} line {number} cannot be read ({error})") from None
        entries.append(entry)
    return entries


def check_log(manifest, options):
    """Before a restore writes anything: find the erasure log, or refuse unless told there is none.

    A restore that cannot see the erasures made since the backup would bring those patients back in
    silence (a go-live drill did exactly that): the log is ``--erasure-log PATH`` (the copy kept
    beside the backups), else ``PNEUMOWEB_ERASURE_LOG`` when that file exists; with neither, only
    ``--no-erasures-since-backup`` lets the restore go on, and it is printed back as a warning.
    """
    given, none_since = options.get("erasure_log"), options.get("no_erasures_since_backup")
    taken = manifest.get("created_at", "?")
    if given and none_since:
        raise BackupError("Give --erasure-log or --no-erasures-since-backup, not both.")
    path = Path(given) if given else log_path()
    if none_since and path is not None and path.is_file():
        # Re-applying a logged erasure never harms: the log found is used, and the operator told.
        entries = _readable(path)
        options["erasure_log"] = str(path)
        return (f"Erasure log {path} found: used although --no-erasures-since-backup was given; "
                f"{len(entries)} erasure(s) listed.")
    if given and not path.is_file():
        raise BackupError(f"The erasure log {path} does not exist or is not a file.")
    if not given and (path is None or not path.is_file()):
        if none_since:
            options["erasure_log"] = None
            return (f"WARNING: restored without an erasure log (--no-erasures-since-backup): a patient erased after "
                    f"the backup was taken ({taken}) is back in this database.")
        where = f"at {path}" if path else "(PNEUMOWEB_ERASURE_LOG is not set)"
        raise BackupError(
            f"No erasure log {where}: a patient erased since this backup was taken ({taken}) would come back. "
            "Give --erasure-log PATH (the copy kept beside the backups) or, if no patient was erased since "
            "the backup, say so with --no-erasures-since-backup.")
    entries = _readable(path)
    options["erasure_log"] = str(path)
    return f"Erasure log {path}: {len(entries)} erasure(s) listed."


def _readable(path):
    try:
        return read_log(path)
    except (ValueError, OSError) as error:
        raise BackupError(f"The erasure log cannot be read, so erasures could not be re-applied: {error}") from None


def reapply_logged(manifest, options):
    """After a restore: erase again every logged patient the restored database still holds; says how many."""
    from django.contrib.auth import get_user_model

    path = options.get("erasure_log")
    if not path:
        return None  # --no-erasures-since-backup: check_log has said so
    reapplied = 0
    for line in read_log(path):
        created_at = datetime.fromisoformat(line["patient_created_at"])
        if not Patient.objects.filter(pk=line["patient_pk"], created_at=created_at).exists():
            continue
        by = get_user_model().objects.filter(pk=line.get("approved_by") or line.get("requested_by")).first()
        # A request the backup caught waiting for approval is carried out; else it is recorded again,
        # with the reason it was made for (older logs had none).
        reason = line.get("reason") or f"Re-applied after a restore (erasure {line['erasure']} of {line['done_at']})"
        erasure = Erasure.objects.filter(patient_pk=line["patient_pk"], status=Erasure.Status.REQUESTED).first() \
            or Erasure.objects.create(
                patient_pk=line["patient_pk"], patient_pseudonym=line["pseudonym"], patient_created_at=created_at,
                reason=reason, requested_by=by)
        carry_out(erasure, approved_by=by, cancel_running=True, logged=False)  # the log has it already
        reapplied += 1
    if reapplied:
        log.warning("Restore: %d erasure(s) made after the backup were applied again", reapplied)
    return f"Re-applied {reapplied} erasure(s) from {path} to patients the backup still held."


def check_erasure_log(app_configs=None, **kwargs):
    """System check: without PNEUMOWEB_ERASURE_LOG, erasing a patient is refused."""
    from django.core import checks

    if log_path() is not None:
        return []
    return [checks.Warning("PNEUMOWEB_ERASURE_LOG is not set: erasing a patient's data is refused until it is.",
                           hint="Set it to a file kept beside the backups, off this machine (docs/OPERATIONS.md).",
                           id="pneumoweb.W002")]
