"""Creating studies and predictions: the one write path for the form and the API."""

from django.db import transaction
from django.utils import timezone

from .models import Prediction, Study


def submit_study(*, patient, checked_image, age_years, uploaded_by, view=Study.View.PA, notes="", source_notes=()):
    """Save the study and a queued prediction atomically, then enqueue the job on commit."""
    from .tasks import run_prediction

    original_name = (getattr(checked_image.upload, "name", "") or "")[:255]
    stored = checked_image.file
    stored.name = f"upload{checked_image.extension}"
    with transaction.atomic():
        study = Study(
            patient=patient,
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
            study.save()
            prediction = Prediction.objects.create(study=study)
        except Exception:
            study.image.delete(save=False)
            raise
        transaction.on_commit(lambda: run_prediction.delay(prediction_pk=prediction.pk))
    return study, prediction


def cancel_prediction(prediction):
    """Cancel a job that has not finished; returns whether anything changed."""
    changed = Prediction.objects.filter(
        pk=prediction.pk, status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
    ).update(status=Prediction.Status.CANCELLED, finished_at=timezone.now())
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
