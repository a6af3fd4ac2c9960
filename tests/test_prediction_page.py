import pytest
from django.urls import reverse

from .factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_it_shows_a_succeeded_result(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    html = logged_in.get(prediction.get_absolute_url()).content.decode()
    assert 'data-testid="prediction-status" id="status">succeeded<' in html
    assert ">PNEUMONIA<" in html
    assert 'data-testid="prediction-confidence" id="confidence">91.0%<' in html
    assert "width: 91%" in html
    assert "compact-test@abababababab" in html and "0.5000" in html
    assert reverse("study_image", args=[prediction.study_id]) in html
    assert "Decision support, not a diagnosis" in html


def test_it_polls_while_queued(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    html = logged_in.get(prediction.get_absolute_url()).content.decode()
    assert ">queued<" in html
    assert f'data-api-url="/api/predictions/{prediction.pk}/"' in html
    assert "js/prediction-poll.js" in html


def test_it_shows_the_error_of_a_failed_job(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="failed", error="Timed out after 120 s.")
    html = logged_in.get(prediction.get_absolute_url()).content.decode()
    assert "Timed out after 120 s." in html


def test_it_warns_about_untrained_weights(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, model_name="compact-untrained-seed0")
    assert "untrained weights" in logged_in.get(prediction.get_absolute_url()).content.decode()


def test_it_shows_the_review(logged_in, patient, reviewer):
    from django.utils import timezone

    prediction = PredictionFactory(
        study=StudyFactory(patient=patient), succeeded=True, review_verdict="disagree", review_label="NORMAL",
        review_comment="Normal thymus.", reviewed_by=reviewer, reviewed_at=timezone.now(),
    )
    html = logged_in.get(prediction.get_absolute_url()).content.decode()
    assert "Disagree" in html and "corrected label NORMAL" in html and "Normal thymus." in html
