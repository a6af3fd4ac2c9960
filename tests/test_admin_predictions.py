import csv
import io

import pytest
from django.urls import reverse

from diagnosis.models import Prediction

from .factories import PASSWORD, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:diagnosis_prediction_changelist")
EXPORT = reverse("admin:diagnosis_prediction_export")


@pytest.fixture
def admin_client_for_reviewer(client, reviewer):
    assert client.login(username=reviewer.username, password=PASSWORD)
    return client


def change_url(prediction):
    return reverse("admin:diagnosis_prediction_change", args=[prediction.pk])


def test_it_lists_predictions_with_thumbnail_and_filters(admin_client_for_reviewer, patient, foreign_patient):
    mine = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    other = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    response = admin_client_for_reviewer.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("study_thumbnail", args=[mine.study_id]) in html
    assert patient.mrn in html and foreign_patient.mrn in html
    assert "compact-test@abababababab" in html
    assert "Export CSV" in html
    for name in ("label", "status", "model_name", "reviewed"):
        assert f"?{name}" in html or f"{name}__exact=" in html or f"{name}=" in html
    searched = admin_client_for_reviewer.get(CHANGELIST, {"q": foreign_patient.mrn})
    assert list(searched.context["cl"].result_list) == [other]
    filtered = admin_client_for_reviewer.get(CHANGELIST, {"reviewed": "no", "label__exact": "PNEUMONIA"})
    assert list(filtered.context["cl"].result_list) == [mine]


def test_it_records_a_review_and_nothing_else(admin_client_for_reviewer, reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = admin_client_for_reviewer.post(
        change_url(prediction),
        {
            "review_verdict": "disagree",
            "review_label": "NORMAL",
            "review_comment": "Artefact.",
            "label": "NORMAL",
            "probability": "0.01",
            "status": "failed",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    prediction.refresh_from_db()
    assert prediction.review_verdict == "disagree" and prediction.review_label == "NORMAL"
    assert prediction.reviewed_by == reviewer and prediction.reviewed_at is not None
    assert prediction.label == "PNEUMONIA" and prediction.probability == pytest.approx(0.91)
    assert prediction.status == Prediction.Status.SUCCEEDED


def test_it_keeps_unfinished_predictions_read_only(admin_client_for_reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    admin_client_for_reviewer.post(change_url(prediction), {"review_verdict": "agree"})
    prediction.refresh_from_db()
    assert prediction.review_verdict == ""


def test_it_has_no_add_or_delete(admin_client_for_reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert admin_client_for_reviewer.get(reverse("admin:diagnosis_prediction_add")).status_code == 403
    delete = reverse("admin:diagnosis_prediction_delete", args=[prediction.pk])
    assert admin_client_for_reviewer.post(delete, {"post": "yes"}).status_code == 403
    assert Prediction.objects.filter(pk=prediction.pk).exists()


def test_it_exports_the_filtered_list_as_csv(admin_client_for_reviewer, patient):
    positive = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.2)
    PredictionFactory(study=StudyFactory(patient=patient))
    response = admin_client_for_reviewer.get(EXPORT, {"label__exact": "PNEUMONIA"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["id"]) for r in rows] == [positive.pk]
    assert rows[0]["mrn"] == patient.mrn and rows[0]["probability"] == "0.910000"
    assert rows[0]["model_sha256"] == "ab" * 32


def test_it_neutralises_spreadsheet_formulas_in_csv(admin_client_for_reviewer, patient):
    patient.name = "=HYPERLINK(\"http://evil\")"
    patient.save()
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    body = b"".join(admin_client_for_reviewer.get(EXPORT).streaming_content).decode()
    assert "'=HYPERLINK" in body


def test_it_keeps_clinicians_out_of_the_admin(logged_in):
    assert logged_in.get(CHANGELIST).status_code == 302
    assert logged_in.get(EXPORT).status_code == 302
