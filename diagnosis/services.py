"""The one write path for pages and API: patients (and their MRN rule), studies, predictions, reviews."""

import random

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from .jobs.dispatch import dispatch
from .models import Patient, Prediction, Study

_random = random.SystemRandom()  # not reproducible on purpose: no one can predict which study is drawn

MRN_TAKEN = "You already have a patient with this MRN."


class MrnTaken(Exception):
    """Another request saved a patient with the same MRN first (caught at the unique constraint)."""


class PatientMismatch(Exception):
    """An upload names an existing MRN with another patient's name or birth date: never attach it silently."""


def identity_conflict(patient, *, name="", date_of_birth=None):
    """Why an upload's patient fields contradict the record with its MRN ("" when they agree or are not given).

    Names compare without regard to case and spacing; a birth date only when both are known.
    """
    def same(a, b):
        return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()

    wrong = []
    if name and name.strip() and not same(name, patient.name):
        wrong.append(f'the name "{name.strip()}"')
    if date_of_birth and patient.date_of_birth and date_of_birth != patient.date_of_birth:
        wrong.append(f"the birth date {date_of_birth.isoformat()}")
    if not wrong:
        return ""
    return (f"MRN {patient.mrn} is already your patient {patient.name}"
            f"{f' (born {patient.date_of_birth.isoformat()})' if patient.date_of_birth else ''}; "
            f"this upload gives {' and '.join(wrong)}. Check the MRN, or correct the patient record first: "
            "nothing was saved.")


def clean_mrn(mrn, *, owner, patient=None):
    """The MRN without surrounding spaces; ValidationError when the owner has another patient with it."""
    mrn = mrn.strip()
    clash = Patient.objects.filter(owner=owner, mrn=mrn)
    if patient is not None and patient.pk:
        clash = clash.exclude(pk=patient.pk)
    if clash.exists():
        raise ValidationError(MRN_TAKEN)
    return mrn


def save_patient(save):
    """Run ``save`` (a form's or serializer's save) in its own transaction and return what it returns.

    ``clean_mrn`` checked the MRN before; two requests with one new MRN can still both pass that
    check, and the loser of the race on the unique (owner, MRN) constraint gets ``MrnTaken``.
    """
    try:
        with transaction.atomic():
            return save()
    except IntegrityError:
        raise MrnTaken(MRN_TAKEN) from None


def drawn_for_review():
    """Whether a new study joins the random review sample: with PNEUMOWEB_REVIEW_SAMPLE_SHARE, at upload.

    Drawn before anyone sees the result, so the sample's reviews stand for every accepted study, not for
    the flagged and borderline ones reviewers open first (diagnosis/site_points.py counts them apart).
    """
    return _random.random() < settings.PNEUMOWEB_REVIEW_SAMPLE_SHARE


def submit_study(*, checked_image, age_years, uploaded_by, patient=None, new_patient=None, view=Study.View.PA,
                 notes="", source_notes=()):
    """Save the study (and its patient, when ``new_patient`` gives the fields of one to get or create)
    and a queued prediction in one transaction, then hand the job to the broker on commit.

    If anything fails before the commit, the stored image is deleted again: no file without a row.
    A broker that cannot take the job does not fail the upload (``dispatch``).
    """
    original_name = (getattr(checked_image.upload, "name", "") or "")[:255]
    stored = checked_image.file
    stored.name = f"upload{checked_image.extension}"
    study = Study(
        original_filename=original_name,
        image_sha256=checked_image.sha256,
        source_format=checked_image.source_format,
        source_notes=list(source_notes),
        image_width=checked_image.width,
        image_height=checked_image.height,
        age_years=age_years,
        view=view,
        notes=notes,
        uploaded_by=uploaded_by,
    )
    study.image.save(stored.name, stored, save=False)
    try:
        with transaction.atomic():
            if patient is None:
                patient = get_or_create_patient(owner=uploaded_by, **new_patient)
            # The patient row locked: an erasure of this patient (diagnosis/erasure.py) cannot run
            # meanwhile; one that committed first leaves nothing to file the study under.
            if not Patient.objects.select_for_update().filter(pk=patient.pk).exists():
                raise Http404("This patient's record no longer exists.")
            study.patient = patient
            study.save()
            prediction = Prediction.objects.create(study=study, review_sample=drawn_for_review())
            transaction.on_commit(lambda: dispatch(prediction.pk))
    except BaseException:
        study.image.delete(save=False)
        raise
    return study, prediction


def submit_studies(accepted, *, uploaded_by, notes="", patient=None, new_patient=None):
    """One study and queued prediction per checked file (``images.check_each``); returns the predictions.

    ``accepted`` holds (checked image, age, view, source notes); a new patient, if any, is created
    with the first study and the others join it.
    """
    predictions = []
    for checked, age, view, source_notes in accepted:
        study, prediction = submit_study(patient=patient, new_patient=new_patient, checked_image=checked,
                                         age_years=age, uploaded_by=uploaded_by, view=view, notes=notes,
                                         source_notes=source_notes)
        patient, new_patient = study.patient, None
        predictions.append(prediction)
    return predictions


def get_or_create_patient(*, owner, mrn, name="", sex=Patient.Sex.UNKNOWN, date_of_birth=None):
    """The owner's patient with this MRN, created from the other fields when there is none.

    Two uploads that create the same new patient at once both get the one row: the loser of the
    race on the unique (owner, MRN) constraint reads the winner's. An existing record whose name or
    birth date contradicts the fields given raises ``PatientMismatch``.
    """
    try:
        with transaction.atomic():
            patient, created = Patient.objects.get_or_create(
                owner=owner, mrn=mrn, defaults={"name": name, "sex": sex, "date_of_birth": date_of_birth})
    except IntegrityError:
        patient, created = Patient.objects.get(owner=owner, mrn=mrn), False
    # Checked again here, not only in the request's validation: a concurrent upload may have created
    # the record with other details in between.
    conflict = "" if created else identity_conflict(patient, name=name, date_of_birth=date_of_birth)
    if conflict:
        raise PatientMismatch(conflict)
    return patient


def cancel_prediction(prediction):
    """Cancel a job that has not finished; returns whether anything changed."""
    changed = Prediction.objects.filter(pk=prediction.pk).update_status(Prediction.Status.CANCELLED)
    prediction.refresh_from_db()
    return bool(changed)


def review_errors(*, verdict, label, comment):
    """The review rules, for the admin form and the API alike: {field: message}, empty when valid."""
    errors = {}
    if verdict == Prediction.Verdict.DISAGREE and not label:
        errors["review_label"] = "Give the corrected label when you disagree."
    if not verdict and (label or comment):
        errors["review_verdict"] = "Choose a verdict to record a review."
    return errors


def apply_review(prediction, *, verdict, label, comment, reviewer):
    """Set the review fields (the caller saves). Agreement keeps no corrected label."""
    prediction.review_verdict = verdict
    prediction.review_label = "" if verdict == Prediction.Verdict.AGREE else label
    prediction.review_comment = comment
    prediction.reviewed_by = reviewer
    prediction.reviewed_at = timezone.now()
