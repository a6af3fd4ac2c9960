import pytest
from django.urls import reverse

from .factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def test_it_lists_pneumonia_positive_results_first(logged_in, patient):
    normal = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.1)
    positive = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    queued = PredictionFactory(study=StudyFactory(patient=patient))
    response = logged_in.get(reverse("dashboard"))
    assert [p.pk for p in response.context["predictions"]] == [positive.pk, queued.pk, normal.pk]
    html = response.content.decode()
    assert "badge-queued" in html and "badge-succeeded" in html
    assert "91.0%" in html and "90.0%" in html
    assert "compact-test@abababababab" in html
    assert reverse("study_thumbnail", args=[positive.study_id]) in html


def test_it_has_an_empty_state(logged_in):
    assert "No predictions yet" in logged_in.get(reverse("dashboard")).content.decode()


def test_it_serves_local_static_files_only(logged_in):
    html = logged_in.get(reverse("dashboard")).content.decode()
    assert "/static/css/app.css" in html
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html
