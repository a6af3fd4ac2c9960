import pytest
from django.urls import reverse

from diagnosis.models import Prediction

from ..base import api_client_for, integrity_failures, tamper_with
from ..factories import PatientFactory, PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db

LIST = reverse("api:prediction-list")


def detail(pk):
    return reverse("api:prediction-detail", args=[pk])


def test_it_shows_a_succeeded_prediction(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    body = api.get(detail(prediction.pk)).json()
    assert body["status"] == "succeeded"
    assert body["label"] == "PNEUMONIA"
    assert body["probability"] == pytest.approx(0.91)
    assert body["confidence"] == pytest.approx(0.91)
    assert body["threshold"] == 0.5
    assert body["model"] == {"name": "compact-test", "weights_sha256": "ab" * 32}
    assert body["patient"] == patient.pk
    assert body["study"]["image_url"].endswith(f"/api/studies/{prediction.study_id}/image/")
    assert body["review"] is None
    assert body["error"] == ""
    assert body["warnings"] == [] and body["ood"] is False and body["ood_reason"] == ""


def test_it_reports_a_rejected_input_without_a_label(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), rejected=True)
    body = api.get(detail(prediction.pk)).json()
    assert body["status"] == "rejected" and body["ood"] is True
    assert body["ood_reason"] == "The image is in colour; chest X-rays are grayscale."
    assert body["label"] is None and body["probability"] is None and body["confidence"] is None


def test_it_links_and_serves_the_heatmaps(api, patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    body = api.get(detail(prediction.pk)).json()
    base = f"http://testserver/api/predictions/{prediction.pk}/heatmap/"
    assert body["heatmap"] == base
    assert body["heatmaps"] == {"combined": base, "cnn": base + "?branch=cnn", "vit": base + "?branch=vit"}
    for url in body["heatmaps"].values():
        response = api.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
        assert "private" in response["Cache-Control"]
    assert api.get(base + "?branch=nope").status_code == 404


def test_it_has_no_heatmap_before_the_result(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    body = api.get(detail(prediction.pk)).json()
    assert body["heatmap"] is None and body["heatmaps"] == {}
    assert api.get(f"/api/predictions/{prediction.pk}/heatmap/").status_code == 404


def test_it_hides_another_clinicians_heatmap(api, foreign_patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True))
    assert api.get(f"/api/predictions/{prediction.pk}/heatmap/").status_code == 404


def test_it_reports_intended_use_warnings(api, patient):
    warnings = ["The model was validated on frontal (PA/AP) chest X-rays only; this study is lateral."]
    prediction = PredictionFactory(study=StudyFactory(patient=patient, view="LAT"), succeeded=True, warnings=warnings)
    body = api.get(detail(prediction.pk)).json()
    assert body["warnings"] == warnings and body["label"] == "PNEUMONIA"


def test_it_reports_confidence_of_the_label_shown(api, patient):
    prediction = PredictionFactory(
        study=StudyFactory(patient=patient), succeeded=True, label=Prediction.Label.NORMAL, probability=0.2
    )
    assert api.get(detail(prediction.pk)).json()["confidence"] == pytest.approx(0.8)


def test_it_hides_other_clinicians_predictions(api, foreign_patient):
    prediction = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    assert api.get(detail(prediction.pk)).status_code == 404
    assert api.get(LIST).json()["count"] == 0


def test_it_lets_a_reviewer_read_everyones_predictions(reviewer, patient, foreign_patient):
    PredictionFactory(study=StudyFactory(patient=patient))
    PredictionFactory(study=StudyFactory(patient=foreign_patient))
    assert api_client_for(reviewer).get(LIST).json()["count"] == 2


def test_it_requires_authentication(client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    assert client.get(detail(prediction.pk)).status_code in (401, 403)
    assert client.get(LIST).status_code in (401, 403)


def test_it_filters_by_status_label_and_patient(api, clinician):
    a, b = PatientFactory(owner=clinician), PatientFactory(owner=clinician)
    done = PredictionFactory(study=StudyFactory(patient=a), succeeded=True)
    normal = PredictionFactory(study=StudyFactory(patient=b), succeeded=True, label="NORMAL", probability=0.1)
    queued = PredictionFactory(study=StudyFactory(patient=b))

    def ids(**params):
        return sorted(p["id"] for p in api.get(LIST, params).json()["results"])

    assert ids(status="queued") == [queued.pk]
    assert ids(label="PNEUMONIA") == [done.pk]
    assert ids(patient=b.pk) == sorted([normal.pk, queued.pk])
    assert ids(mrn=a.mrn) == [done.pk]
    assert ids(reviewed="false") == sorted([done.pk, normal.pk, queued.pk])
    assert api.get(LIST, {"status": "bogus"}).status_code == 400


def test_it_filters_by_date(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    day = prediction.queued_at.date().isoformat()
    assert api.get(LIST, {"date": day}).json()["count"] == 1
    assert api.get(LIST, {"date": "1999-01-01"}).json()["count"] == 0
    assert api.get(LIST, {"date": "not-a-date"}).status_code == 400


def test_it_paginates(api, patient, settings):
    for _ in range(27):
        PredictionFactory(study=StudyFactory(patient=patient))
    first = api.get(LIST).json()
    assert first["count"] == 27 and len(first["results"]) == 25 and first["next"]
    assert len(api.get(first["next"]).json()["results"]) == 2


def test_it_cancels_a_queued_prediction(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    response = api.post(reverse("api:prediction-cancel", args=[prediction.pk]))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.CANCELLED and prediction.finished_at


def test_it_refuses_to_cancel_a_finished_prediction(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = api.post(reverse("api:prediction-cancel", args=[prediction.pk]))
    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]


def test_it_lets_a_reviewer_record_a_verdict(reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    url = reverse("api:prediction-review", args=[prediction.pk])
    body = {"verdict": "disagree", "corrected_label": "NORMAL", "comment": "Thymus, not consolidation."}
    response = api_client_for(reviewer).post(url, body, format="json")
    assert response.status_code == 200, response.content
    review = response.json()["review"]
    assert review["verdict"] == "disagree" and review["corrected_label"] == "NORMAL"
    assert review["reviewed_by"] == reviewer.username and review["reviewed_at"]
    prediction.refresh_from_db()
    assert prediction.label == "PNEUMONIA"  # the model's answer is kept


def test_it_requires_a_corrected_label_to_disagree(reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    url = reverse("api:prediction-review", args=[prediction.pk])
    response = api_client_for(reviewer).post(url, {"verdict": "disagree"}, format="json")
    assert response.status_code == 400
    assert "corrected_label" in response.json()


def test_it_does_not_let_a_clinician_review(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = api.post(reverse("api:prediction-review", args=[prediction.pk]), {"verdict": "agree"}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize("params, field", [
    ({"reviewed": "maybe"}, "reviewed"),
    ({"status": "done"}, "status"),
    ({"label": "COVID"}, "label"),
    ({"queued_after": ""}, "queued_after"),
    ({"patient": ""}, "patient"),
    ({"queued_before": "yesterday"}, "queued_before"),
    ({"date": "2026-13-40"}, "date"),
    ({"patient": "abc"}, "patient"),
])
def test_it_refuses_filter_values_it_does_not_know(api, params, field):
    response = api.get(LIST, params)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("moment", ["2000-01-01T00:00:00+14:00", "2000-01-01T00:00:00+16:00",
                                    "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_it_reads_any_utc_offset_rfc_3339_allows(api, patient, moment):
    # PostgreSQL refuses offsets past ±15:59: the filter hands it UTC (clamped at the ends of time).
    PredictionFactory(study=StudyFactory(patient=patient))
    response = api.get(LIST, {"queued_after": moment})
    assert response.status_code == 200
    assert response.json()["count"] == (0 if moment.startswith("9999") else 1)


def test_it_refuses_a_nul_character_anywhere_in_the_query(api):
    assert api.get(LIST + "?mrn=%00").status_code == 400


def test_it_marks_patient_data_not_to_be_stored(api, patient):
    response = api.get(LIST)
    assert "no-store" in response["Cache-Control"]


def test_it_gives_the_bacterial_or_viral_output_with_its_validation(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient, age_years="3"), bacterial=True)
    body = api.get(detail(prediction.pk)).json()
    assert body["label"] == "PNEUMONIA"
    assert body["subtype"]["label"] == "bacterial" and body["subtype"]["probability"] == 0.83
    assert body["subtype"]["validation"] == {"auc": 0.912, "ci95": [0.88, 0.94], "n": 561, "validated_ages": [1, 5]}
    assert "never changes" in body["subtype"]["note"]


def test_it_gives_no_subtype_without_one(api, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert api.get(detail(prediction.pk)).json()["subtype"] is None


def test_it_drops_the_subtype_once_a_reviewer_corrects_the_label_to_normal(api, patient, reviewer):
    prediction = PredictionFactory(study=StudyFactory(patient=patient, age_years="3"), bacterial=True,
                                   review_verdict="disagree", review_label="NORMAL", reviewed_by=reviewer)
    assert api.get(detail(prediction.pk)).json()["subtype"] is None


def test_it_says_whether_a_result_is_borderline(api, patient):
    near = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, probability=0.1852, threshold=0.1848,
                             borderline=True)
    far = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert api.get(detail(near.pk)).json()["borderline"] is True
    assert api.get(detail(far.pk)).json()["borderline"] is False


def test_the_schema_marks_confidence_deprecated(api):
    schema = api.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    properties = schema["components"]["schemas"]["Prediction"]["properties"]
    assert properties["confidence"].get("deprecated") is True and "borderline" in properties


@pytest.mark.parametrize("branch", list(Prediction.HEATMAP_BRANCHES))
def test_it_answers_409_and_sends_nothing_when_a_heatmap_is_not_the_one_stored(api, clinician, patient, branch,
                                                                             caplog):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    field = Prediction.HEATMAP_BRANCHES[branch]
    tampered = tamper_with(getattr(prediction, field))
    response = api.get(reverse("api:prediction-heatmap", args=[prediction.pk]), {"branch": branch})
    assert response.status_code == 409
    assert response.json()["detail"].startswith("This file failed its integrity check")
    assert tampered not in response.content
    assert any(r.levelname == "ERROR" and getattr(prediction, field).name in r.getMessage() for r in caplog.records)
    [entry] = integrity_failures()
    assert (entry.content_type.model, entry.object_pk, entry.actor) == ("prediction", str(prediction.pk), clinician)
    assert entry.additional_data["field"] == field
