import io
from xml.etree import ElementTree

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from ..factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db
URL = reverse("monitoring")


def test_it_shows_reviewers_the_figures_with_a_chart_and_an_export_link(reviewer_client, patient):
    for verdict in ("agree", "agree", ""):
        PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, population="adult",
                          review_verdict=verdict)
    response = reviewer_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="monitoring-group"' in html and "compact-test" in html and "adult" in html
    assert 'data-testid="monitoring-n">3<' in html and "66.7%" in html  # two of three reviewed
    assert f'href="{reverse("api:monitoring")}?export=csv"' in html
    chart = reviewer_client.get(reverse("monitoring_chart") + "?model=compact-test&sha=" + "ab" * 32 + "&population=adult")
    assert chart.status_code == 200 and Image.open(io.BytesIO(chart.content)).format == "PNG"


def test_it_filters_by_period(reviewer_client, patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert 'data-testid="monitoring-group"' not in reviewer_client.get(URL, {"since": "2999-01-01"}).content.decode()


def test_it_is_not_for_clinicians(logged_in):
    assert logged_in.get(URL).status_code == 403
    assert logged_in.get(reverse("monitoring_chart")).status_code == 403
    assert 'data-testid="nav-monitoring"' not in logged_in.get(reverse("dashboard")).content.decode()


def test_the_patient_page_shows_the_history_as_a_trend(logged_in, patient):
    for probability in (0.2, 0.7):
        PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, probability=probability)
    html = logged_in.get(reverse("patient_detail", args=[patient.pk])).content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 260" role="img"' in html
    assert html.count("<circle ") == 2 and "P(pneumonia) 20.0%" in html and "P(pneumonia) 70.0%" in html
    trend = logged_in.get(reverse("patient_trend", args=[patient.pk]))
    assert trend.status_code == 200 and trend["Content-Type"] == "image/svg+xml"
    svg = ElementTree.fromstring(trend.content)
    assert svg.get("viewBox") == "0 0 640 260" and svg.find("{http://www.w3.org/2000/svg}title").text.startswith(patient.name)


def test_the_trend_spaces_studies_of_one_minute_apart_and_escapes_names(logged_in, clinician):
    from ..factories import PatientFactory

    patient = PatientFactory(owner=clinician, name="<script>alert(1)</script>")
    moment = timezone.now()
    for probability in (0.3, 0.6, 0.4):
        PredictionFactory(study=StudyFactory(patient=patient, uploaded_at=moment), succeeded=True, probability=probability)
    svg = ElementTree.fromstring(logged_in.get(reverse("patient_trend", args=[patient.pk])).content)
    xs = [float(c.get("cx")) for c in svg.iter("{http://www.w3.org/2000/svg}circle")]
    assert len(xs) == 3 and xs == sorted(xs) and len(set(xs)) == 3  # same minute: still side by side, in order
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert f"{timezone.localtime(moment):%m-%d %H:%M}" in texts  # same day: the time, not the date thrice
    assert texts.count("N") + texts.count("P") == 3  # the N/P markers the caption promises
    assert "<script>" not in logged_in.get(reverse("patient_detail", args=[patient.pk])).content.decode()


def test_another_clinicians_trend_is_not_found(logged_in, foreign_patient):
    assert logged_in.get(reverse("patient_trend", args=[foreign_patient.pk])).status_code == 404


def test_its_filters_are_date_pickers_and_selects_of_what_is_on_record(reviewer_client, patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, population="adult")
    html = reviewer_client.get(reverse("monitoring")).content.decode()
    assert html.count('type="date"') == 2
    assert '<option value="compact-test">compact-test</option>' in html
    assert '<option value="adult">adult</option>' in html
