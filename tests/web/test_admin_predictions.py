"""The prediction admin: the reviewers' worklist, review-only edits and the CSV export."""

import csv
import io

import pytest
from django.urls import reverse

from diagnosis.models import Prediction

from ..base import verify_session
from ..factories import PASSWORD, PatientFactory, PredictionFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:diagnosis_prediction_changelist")
EXPORT = reverse("admin:diagnosis_prediction_export")
CSV_HEADER = [
    "id", "mrn", "patient", "study", "age_years", "status", "label", "probability", "threshold", "population", "ood", "ood_reason",
    "warnings", "subtype", "subtype_probability",
    "model_name", "model_sha256", "queued_at", "finished_at", "review_verdict", "review_label",
    "review_comment", "reviewed_by", "reviewed_at",
]


def change_url(prediction):
    return reverse("admin:diagnosis_prediction_change", args=[prediction.pk])


def csv_rows(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="predictions-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_it_lists_everyones_predictions_with_thumbnails(reviewer_client, patient, foreign_patient):
    mine = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    other = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    response = reviewer_client.get(CHANGELIST)
    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == {mine, other}
    html = response.content.decode()
    assert reverse("study_thumbnail", args=[mine.study_id]) in html
    assert patient.mrn in html and foreign_patient.mrn in html
    assert "compact-test@abababababab" in html and "0.910" in html


def test_it_has_filters_and_a_date_hierarchy(reviewer_client, patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    cl = reviewer_client.get(CHANGELIST).context["cl"]
    titles = {str(spec.title) for spec in cl.filter_specs}
    assert {"label", "status", "model name", "model weights sha256", "reviewed", "review verdict", "queued at"} <= titles
    assert cl.date_hierarchy == "queued_at"


def test_it_filters(reviewer_client, reviewer, patient):
    positive = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    normal = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.2)
    failed = PredictionFactory(study=StudyFactory(patient=patient), status="failed")
    Prediction.objects.filter(pk=normal.pk).update(review_verdict="agree", reviewed_by=reviewer)

    def listed(**params):
        return set(reviewer_client.get(CHANGELIST, params).context["cl"].result_list)

    assert listed(label__exact="PNEUMONIA") == {positive}
    assert listed(status__exact="failed") == {failed}
    assert listed(reviewed="yes") == {normal}
    assert listed(reviewed="no") == {positive, failed}
    assert listed(reviewed="no", label__exact="PNEUMONIA") == {positive}


def test_it_filters_and_shows_results_outside_validated_use(reviewer_client, patient):
    warning = "Age 45 years is outside the ages the model was validated on (1–5 years): its answer is less reliable."
    adult = PredictionFactory(study=StudyFactory(patient=patient, age_years="45"), succeeded=True, warnings=[warning])
    child = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)

    def listed(**params):
        return set(reviewer_client.get(CHANGELIST, params).context["cl"].result_list)

    assert listed(warned="yes") == {adult} and listed(warned="no") == {child}
    page = reviewer_client.get(reverse("admin:diagnosis_prediction_change", args=[adult.pk])).content.decode()
    assert "Intended-use warnings" in page and "Age 45 years is outside" in page
    rows = {int(r[0]): dict(zip(CSV_HEADER, r, strict=True)) for r in csv_rows(reviewer_client.get(EXPORT))[1:]}
    assert rows[adult.pk]["warnings"] == warning and rows[child.pk]["warnings"] == ""


def test_it_filters_and_shows_rejected_inputs_with_their_reason(reviewer_client, patient):
    rejected = PredictionFactory(study=StudyFactory(patient=patient), rejected=True)
    accepted = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)

    def listed(**params):
        return set(reviewer_client.get(CHANGELIST, params).context["cl"].result_list)

    assert listed(ood__exact="1") == {rejected} and listed(ood__exact="0") == {accepted}
    assert listed(status__exact="rejected") == {rejected}
    page = reviewer_client.get(change_url(rejected)).content.decode()
    assert "The image is in colour; chest X-rays are grayscale." in page
    rows = {int(r[0]): dict(zip(CSV_HEADER, r, strict=True)) for r in csv_rows(reviewer_client.get(EXPORT))[1:]}
    assert (rows[rejected.pk]["ood"], rows[rejected.pk]["label"]) == ("true", "")
    assert rows[rejected.pk]["ood_reason"] == rejected.ood_reason
    assert (rows[accepted.pk]["ood"], rows[accepted.pk]["ood_reason"]) == ("false", "")


def test_it_lays_the_heatmap_over_the_xray_on_the_change_page(reviewer_client, patient):
    with_map = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, heatmap="heatmaps/x.png",
                                 heatmap_cnn="heatmaps/x.png")
    without = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    html = reviewer_client.get(change_url(with_map)).content.decode()
    for branch in ("combined", "cnn"):
        assert reverse("prediction_heatmap", args=[with_map.pk, branch]) in html
    # no ViT map stored (v4 makes none): no link to a 404
    assert reverse("prediction_heatmap", args=[with_map.pk, "vit"]) not in html
    assert 'class="heatmap-overlay"' in html
    assert "heatmap-overlay" not in reviewer_client.get(change_url(without)).content.decode()


def test_it_searches_by_mrn(reviewer_client, patient, foreign_patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    other = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    searched = reviewer_client.get(CHANGELIST, {"q": foreign_patient.mrn})
    assert list(searched.context["cl"].result_list) == [other]
    assert reviewer_client.get(CHANGELIST, {"q": "no-such-mrn"}).context["cl"].result_count == 0


def test_it_links_the_csv_export_of_the_filtered_list(reviewer_client):
    html = reviewer_client.get(CHANGELIST, {"label__exact": "PNEUMONIA", "q": "MRN 1"}).content.decode()
    assert f'href="{EXPORT}?label__exact=PNEUMONIA&amp;q=MRN+1"' in html and "Export CSV" in html
    assert "object-tools" in html and "addlink" not in html  # no "Add" button: predictions come from uploads


def test_it_shows_results_read_only_and_the_review_editable(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = reviewer_client.get(change_url(prediction))
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("review_verdict", "review_label", "review_comment"):
        assert f'name="{name}"' in html, name
    for name in ("label", "probability", "threshold", "status", "model_name", "reviewed_by", "reviewed_at"):
        assert f'name="{name}"' not in html, name
    assert reverse("study_image", args=[prediction.study_id]) in html


def test_it_records_a_review_and_nothing_else(reviewer_client, reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = reviewer_client.post(
        change_url(prediction),
        {
            "review_verdict": "disagree",
            "review_label": "NORMAL",
            "review_comment": "Artefact.",
            "label": "NORMAL",
            "probability": "0.01",
            "status": "failed",
            "reviewed_by": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    prediction.refresh_from_db()
    assert prediction.review_verdict == "disagree" and prediction.review_label == "NORMAL"
    assert prediction.review_comment == "Artefact."
    assert prediction.reviewed_by == reviewer and prediction.reviewed_at is not None
    assert prediction.label == "PNEUMONIA" and prediction.probability == pytest.approx(0.91)
    assert prediction.status == Prediction.Status.SUCCEEDED


def test_it_clears_the_corrected_label_on_agreement(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = reviewer_client.post(
        change_url(prediction), {"review_verdict": "agree", "review_label": "NORMAL", "review_comment": ""}
    )
    assert response.status_code == 302
    prediction.refresh_from_db()
    assert prediction.review_verdict == "agree" and prediction.review_label == ""


def test_it_requires_the_corrected_label_on_disagreement(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = reviewer_client.post(
        change_url(prediction), {"review_verdict": "disagree", "review_label": "", "review_comment": ""}
    )
    assert response.status_code == 200
    assert "Give the corrected label when you disagree." in response.content.decode()
    prediction.refresh_from_db()
    assert prediction.review_verdict == "" and prediction.reviewed_by is None


def test_it_requires_a_verdict_for_a_comment(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = reviewer_client.post(
        change_url(prediction), {"review_verdict": "", "review_label": "", "review_comment": "Hmm."}
    )
    assert response.status_code == 200
    assert "Choose a verdict to record a review." in response.content.decode()
    prediction.refresh_from_db()
    assert prediction.review_comment == "" and prediction.reviewed_at is None


def test_it_does_not_stamp_a_save_without_changes(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    reviewer_client.post(change_url(prediction), {"review_verdict": "", "review_label": "", "review_comment": ""})
    prediction.refresh_from_db()
    assert prediction.reviewed_by is None and prediction.reviewed_at is None


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_it_keeps_unfinished_predictions_read_only(reviewer_client, patient, status):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status=status)
    assert 'name="review_verdict"' not in reviewer_client.get(change_url(prediction)).content.decode()
    reviewer_client.post(change_url(prediction), {"review_verdict": "agree", "status": "succeeded"})
    prediction.refresh_from_db()
    assert prediction.review_verdict == "" and prediction.status == status and prediction.reviewed_by is None


def test_it_has_no_add_or_delete(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert reviewer_client.get(reverse("admin:diagnosis_prediction_add")).status_code == 403
    delete = reverse("admin:diagnosis_prediction_delete", args=[prediction.pk])
    assert reviewer_client.post(delete, {"post": "yes"}).status_code == 403
    assert Prediction.objects.filter(pk=prediction.pk).exists()


def test_it_exports_the_filtered_list_as_csv(reviewer_client, patient):
    positive = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.2)
    PredictionFactory(study=StudyFactory(patient=patient))
    rows = csv_rows(reviewer_client.get(EXPORT, {"label__exact": "PNEUMONIA"}))
    assert rows[0] == CSV_HEADER
    assert len(rows) == 2
    row = dict(zip(CSV_HEADER, rows[1], strict=True))
    assert int(row["id"]) == positive.pk and row["mrn"] == patient.mrn and row["patient"] == patient.name
    assert row["probability"] == "0.910000" and row["label"] == "PNEUMONIA" and row["status"] == "succeeded"
    assert row["model_sha256"] == "ab" * 32 and row["age_years"] == "3.50"


def test_it_exports_everything_unfiltered_and_follows_the_search(reviewer_client, patient, foreign_patient):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    theirs = PredictionFactory(study=StudyFactory(patient=foreign_patient))
    assert len(csv_rows(reviewer_client.get(EXPORT))) == 3
    rows = csv_rows(reviewer_client.get(EXPORT, {"q": foreign_patient.mrn}))
    assert [int(r[0]) for r in rows[1:]] == [theirs.pk]


def test_it_exports_just_the_header_when_nothing_matches(reviewer_client, patient):
    PredictionFactory(study=StudyFactory(patient=patient))
    assert csv_rows(reviewer_client.get(EXPORT, {"label__exact": "NORMAL"})) == [CSV_HEADER]


def test_it_exports_the_review(reviewer_client, reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    reviewer_client.post(
        change_url(prediction), {"review_verdict": "disagree", "review_label": "NORMAL", "review_comment": "Thymus."}
    )
    rows = csv_rows(reviewer_client.get(EXPORT, {"reviewed": "yes"}))
    row = dict(zip(CSV_HEADER, rows[1], strict=True))
    assert (row["review_verdict"], row["review_label"], row["review_comment"]) == ("disagree", "NORMAL", "Thymus.")
    assert row["reviewed_by"] == reviewer.username and row["reviewed_at"]


def test_it_sends_a_bad_export_filter_back_to_the_list(reviewer_client):
    response = reviewer_client.get(EXPORT, {"bogus__field": "1"})
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}?e=1"


def test_it_neutralises_spreadsheet_formulas_in_csv(reviewer_client, patient):
    patient.name = '=HYPERLINK("http://evil")'
    patient.save()
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    rows = csv_rows(reviewer_client.get(EXPORT))
    assert rows[1][CSV_HEADER.index("patient")] == "'=HYPERLINK(\"http://evil\")"


def test_it_keeps_clinicians_out_of_the_admin(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    for url in (reverse("admin:index"), CHANGELIST, change_url(prediction), EXPORT):
        response = logged_in.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_it_keeps_a_reviewer_without_staff_status_out(client, reviewer):
    reviewer.is_staff = False
    reviewer.save()
    assert client.login(username=reviewer.username, password=PASSWORD)
    verify_session(client, reviewer)  # kept out by the admin itself, not by the second factor
    assert client.get(CHANGELIST).status_code == 302
    assert client.get(EXPORT).status_code == 302


def test_it_shows_a_staff_clinician_only_their_own_records(client, patient, foreign_patient):
    staff_clinician = UserFactory(role="clinician")
    staff_clinician.is_staff = True
    staff_clinician.save()
    own_patient = PatientFactory(owner=staff_clinician)
    own = PredictionFactory(study=StudyFactory(patient=own_patient), succeeded=True)
    foreign = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    assert client.login(username=staff_clinician.username, password=PASSWORD)
    verify_session(client, staff_clinician)  # staff must use a second factor
    assert list(client.get(CHANGELIST).context["cl"].result_list) == [own]
    assert [int(r[0]) for r in csv_rows(client.get(EXPORT))[1:]] == [own.pk]
    assert client.get(change_url(foreign)).status_code in (302, 404)
    # Viewing is allowed; recording a review is not (no review permission).
    html = client.get(change_url(own)).content.decode()
    assert 'name="review_verdict"' not in html


def test_it_shows_probabilities_rounded_not_as_raw_floats(reviewer_client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, probability=0.8893807530403137,
                                   threshold=0.18484844)
    html = reviewer_client.get(change_url(prediction)).content.decode()
    assert "0.889" in html and "0.8893807530403137" not in html and "0.185" in html
