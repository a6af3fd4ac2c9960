"""The PDF report fits on one A4 page: no page two holding only the disclaimer."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import Prediction

from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def readable_pdfs(monkeypatch):
    # Uncompressed page streams: the text of a PDF can be read from its bytes.
    from reportlab import rl_config

    monkeypatch.setattr(rl_config, "pageCompression", 0)


def report_pdf(api, prediction):
    response = api.get(reverse("api:prediction-report", args=[prediction.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    return b"".join(response.streaming_content)


def pages(data):
    """The number of page objects (ReportLab writes no object streams, so each one is readable)."""
    count = len(re.findall(rb"/Type /Page(?![a-zA-Z])", data))
    assert re.search(rb"/Count %d\b" % count, data)  # the page tree agrees
    return count


def test_it_fits_a_usual_report_on_one_page(api, patient):
    finished = with_heatmaps(PredictionFactory(
        study=StudyFactory(patient=patient), succeeded=True, population="pediatric", threshold=0.23,
        warnings=["Age 45 years is outside the ages the model was validated on."]))
    data = report_pdf(api, finished)
    assert pages(data) == 1
    for text in (b"Decision support, not a diagnosis", b"Not reviewed", b"/Subtype /Image"):
        assert text in data  # the page holds everything, the disclaimer and the picture included


def test_it_fits_a_reviewed_report_with_the_secondary_output_on_one_page(api, patient, reviewer):
    prediction = with_heatmaps(PredictionFactory(
        study=StudyFactory(patient=patient), bacterial=True, population="pediatric", threshold=0.23,
        warnings=["Age 45 years is outside the ages the model was validated on.",
                  "The image is smaller than the model was validated on."]))
    Prediction.objects.filter(pk=prediction.pk).update(
        review_verdict="agree", review_comment="Right lower lobe consolidation, as the model says. " * 4,
        reviewed_by=reviewer, reviewed_at=timezone.now())
    data = report_pdf(api, prediction)
    assert pages(data) == 1
    for text in (b"Secondary, not a diagnosis", b"Right lower lobe consolidation", b"Decision support, not a diagnosis"):
        assert text in data


def test_it_fits_a_refusal_on_one_page(api, patient):
    refused = PredictionFactory(study=StudyFactory(patient=patient), rejected=True)
    data = report_pdf(api, refused)
    assert pages(data) == 1 and b"Not a chest X-ray the model was validated on" in data


def test_it_continues_a_review_comment_longer_than_a_page_on_further_pages(api, patient, reviewer):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    Prediction.objects.filter(pk=prediction.pk).update(
        review_verdict="agree", review_comment="A very long review comment. " * 200, reviewed_by=reviewer,
        reviewed_at=timezone.now())
    data = report_pdf(api, prediction)
    assert pages(data) > 1 and b"Decision support, not a diagnosis" in data  # before: a LayoutError, a 500
