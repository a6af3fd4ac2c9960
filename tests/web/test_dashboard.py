"""The worklist (dashboard) and the page layout it shares with every page."""

import re

import pytest
from django.urls import reverse

from ..factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db

URL = reverse("dashboard")


def test_it_requires_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={URL}"


def test_it_lists_pneumonia_positive_results_first(logged_in, patient):
    normal = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.1)
    positive = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    queued = PredictionFactory(study=StudyFactory(patient=patient))
    response = logged_in.get(URL)
    assert [p.pk for p in response.context["predictions"]] == [positive.pk, queued.pk, normal.pk]
    html = response.content.decode()
    # The rows appear in that order on the page too.
    positions = [html.index(reverse("prediction_detail", args=[p.pk]) + '"') for p in (positive, queued, normal)]
    assert positions == sorted(positions)


def test_it_shows_each_row(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient, view="AP"), succeeded=True)
    html = logged_in.get(URL).content.decode()
    assert reverse("study_thumbnail", args=[prediction.study_id]) in html
    assert f'href="{reverse("patient_detail", args=[patient.pk])}"' in html
    assert patient.name in html and patient.mrn in html
    assert '<span class="badge badge-succeeded">succeeded</span>' in html
    assert ">PNEUMONIA<" in html
    assert "91.0%" in html
    assert "compact-test@abababababab" in html
    assert "Frontal AP" in html
    assert prediction.queued_at.strftime("%Y-%m-%d") in html
    assert f'href="{reverse("prediction_detail", args=[prediction.pk])}"' in html


def test_it_shows_p_pneumonia_and_the_threshold_not_a_confidence(logged_in, patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.127)
    html = logged_in.get(URL).content.decode()
    assert "12.7%" in html and "threshold 50.0%" in html and ">NORMAL<" in html and "87.3%" not in html


def test_it_flags_borderline_rows(logged_in, patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, borderline=True)
    assert 'data-testid="row-borderline">borderline — review<' in logged_in.get(URL).content.decode()


@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "rejected", "failed", "cancelled"])
def test_it_gives_every_status_a_badge(logged_in, patient, status):
    PredictionFactory(study=StudyFactory(patient=patient), status=status)
    html = logged_in.get(URL).content.decode()
    assert f'<span class="badge badge-{status}">{status}</span>' in html


def test_it_has_an_empty_state_with_an_upload_link(logged_in):
    html = logged_in.get(URL).content.decode()
    assert "No predictions yet" in html
    assert f'href="{reverse("upload")}"' in html


def test_it_hides_another_clinicians_predictions(logged_in, patient, foreign_patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    foreign = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    response = logged_in.get(URL)
    assert foreign not in response.context["predictions"]
    html = response.content.decode()
    assert foreign_patient.mrn not in html and foreign_patient.name not in html
    assert reverse("prediction_detail", args=[foreign.pk]) not in html


def test_it_shows_a_reviewer_everyones_predictions(reviewer_client, patient, foreign_patient):
    mine = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    theirs = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    response = reviewer_client.get(URL)
    assert {p.pk for p in response.context["predictions"]} == {mine.pk, theirs.pk}
    html = response.content.decode()
    assert patient.mrn in html and foreign_patient.mrn in html


def test_it_has_the_navigation(logged_in, clinician):
    html = logged_in.get(URL).content.decode()
    for name in ("dashboard", "patient_list", "upload", "api_token", "api_docs"):
        assert f'href="{reverse(name)}"' in html, name
    assert clinician.username in html
    assert reverse("admin:index") not in html  # no admin link for a clinician
    logout_form = re.search(rf'<form[^>]*action="{re.escape(reverse("logout"))}"[^>]*>.*?</form>', html, re.S)
    assert logout_form and 'method="post"' in logout_form.group(0)
    assert "csrfmiddlewaretoken" in logout_form.group(0)


def test_it_links_the_admin_for_a_reviewer(reviewer_client):
    assert f'href="{reverse("admin:index")}"' in reviewer_client.get(URL).content.decode()


def test_it_is_responsive_and_uses_local_static_files_only(logged_in):
    html = logged_in.get(URL).content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "/static/css/app.css" in html
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html
    assert "<script>" not in html  # no inline scripts
