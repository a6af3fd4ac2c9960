"""Review in the app: the result page's review form (reviewers) and the review queue."""

import pytest
from auditlog.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import Prediction

from ..factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def review(client, prediction, **data):
    return client.post(reverse("prediction_review", args=[prediction.pk]), data)


def test_it_shows_reviewers_the_form_and_clinicians_none(reviewer_client, logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    page = reverse("prediction_detail", args=[prediction.pk])
    assert 'data-testid="review-form"' in reviewer_client.get(page).content.decode()
    assert 'data-testid="review-form"' not in logged_in.get(page).content.decode()


def test_it_records_a_disagreement_with_the_corrected_label(reviewer_client, reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = review(reviewer_client, prediction, review_verdict="disagree", review_label="NORMAL",
                      review_comment="Old scar, no consolidation.")
    assert response.status_code == 302
    prediction.refresh_from_db()
    assert (prediction.review_verdict, prediction.review_label, prediction.reviewed_by) == ("disagree", "NORMAL",
                                                                                            reviewer)
    assert prediction.review_comment == "Old scar, no consolidation." and prediction.reviewed_at is not None
    change = LogEntry.objects.get_for_object(prediction).filter(action=LogEntry.Action.UPDATE).latest("timestamp")
    assert change.actor == reviewer and "review_verdict" in change.changes_dict


def test_it_refuses_a_disagreement_without_a_label_as_a_form_error(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = review(reviewer_client, prediction, review_verdict="disagree")
    assert response.status_code == 400
    assert "Give the corrected label when you disagree." in response.content.decode()
    prediction.refresh_from_db()
    assert prediction.review_verdict == ""


def test_a_clinician_cannot_post_a_review(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert review(logged_in, prediction, review_verdict="agree").status_code == 403
    prediction.refresh_from_db()
    assert prediction.review_verdict == ""


def test_an_unfinished_job_cannot_be_reviewed(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="running")
    assert review(reviewer_client, prediction, review_verdict="agree").status_code == 403


def test_a_review_writes_the_next_report_version(reviewer_client, patient, api):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, population="adult")
    assert api.get(reverse("api:prediction-fhir", args=[prediction.pk])).json()["meta"]["versionId"] == "1"
    review(reviewer_client, prediction, review_verdict="agree")
    assert api.get(reverse("api:prediction-fhir", args=[prediction.pk])).json()["meta"]["versionId"] == "2"


def test_the_queue_puts_borderline_then_pneumonia_first_oldest_first(reviewer_client, patient):
    now = timezone.now()

    def made(minutes_ago, **fields):
        return PredictionFactory(study=StudyFactory(patient=patient), succeeded=True,
                                 queued_at=now - timezone.timedelta(minutes=minutes_ago), **fields)

    normal_old = made(50, label="NORMAL", probability=0.02)
    pneumonia_new, pneumonia_old = made(5), made(40)
    borderline = made(1, borderline=True)
    made(60, review_verdict="agree")  # reviewed already: not in the queue
    PredictionFactory(study=StudyFactory(patient=patient), status="queued")  # unfinished: not in the queue
    html = reviewer_client.get(reverse("review_queue")).content.decode()
    order = [borderline, pneumonia_old, pneumonia_new, normal_old]
    positions = [html.index(f'href="{p.get_absolute_url()}"') for p in order]
    assert positions == sorted(positions) and Prediction.objects.count() == 6
    assert html.count('href="/predictions/') == 2 * len(order)  # image link and "Open" per row


def test_recording_a_review_opens_the_next_in_the_queue(reviewer_client, patient):
    first = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, borderline=True)
    second = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = review(reviewer_client, first, review_verdict="agree")
    assert response["Location"] == second.get_absolute_url()


def test_clinicians_have_no_queue(logged_in):
    assert logged_in.get(reverse("review_queue")).status_code == 403
    assert 'data-testid="nav-review"' not in logged_in.get(reverse("dashboard")).content.decode()
