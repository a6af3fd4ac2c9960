"""GET /api/predictions/{id}/report/, /fhir/ and /reports/: versioned PDF and FHIR R4 reports."""

import hashlib
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from diagnosis.models import Prediction

from ..base import api_client_for, integrity_failures, tamper_with
from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def readable_pdfs(monkeypatch):
    # Uncompressed page streams: the text of a PDF can be read from its bytes.
    from reportlab import rl_config

    monkeypatch.setattr(rl_config, "pageCompression", 0)


def url(name, prediction, **query):
    path = reverse(f"api:prediction-{name}", args=[prediction.pk])
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def pdf_bytes(response):
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    data = b"".join(response.streaming_content)
    assert data.startswith(b"%PDF-")
    return data


@pytest.fixture
def finished(patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, population="pediatric",
                                   threshold=0.23, warnings=["Age 45 years is outside the ages the model was validated on."])
    return with_heatmaps(prediction)


def test_it_writes_a_pdf_report_with_everything_a_clinician_needs(api, finished):
    data = pdf_bytes(api.get(url("report", finished)))
    patient = finished.study.patient
    for text in (patient.mrn, patient.name, "PNEUMONIA", "0.910", "pediatric", r"threshold 0.230 \(the model card", "compact-test",
                 "ab" * 16, "Age 45 years is outside", "Not reviewed", "Decision support, not a diagnosis"):
        assert text.encode() in data, text
    assert b"/Subtype /Image" in data  # the X-ray with its heatmap


def test_it_gives_a_valid_fhir_r4_diagnostic_report_with_its_observation(api, finished):
    response = api.get(url("fhir", finished))
    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    body = response.json()
    DiagnosticReport.model_validate(body)
    contained = {resource["resourceType"]: resource for resource in body["contained"]}
    assert body["status"] == "preliminary"  # not reviewed yet
    assert body["code"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4",
                                         "display": "Diagnostic imaging study"}
    assert body["conclusionCode"][0]["coding"][0]["code"] == "233604007"  # SNOMED CT: pneumonia
    observation = contained["Observation"]
    assert observation["valueQuantity"]["value"] == pytest.approx(0.91)
    assert observation["interpretation"][0]["coding"][0]["code"] == "POS"
    assert observation["device"] == {"reference": "#device"}
    assert contained["Device"]["deviceName"][0]["name"] == "compact-test"
    assert contained["Device"]["version"][0]["value"] == "ab" * 32
    assert contained["Patient"]["identifier"][0]["value"] == finished.study.patient.mrn
    assert "Decision support, not a diagnosis" in body["conclusion"]


def test_it_states_a_refusal_as_such(api, patient):
    refused = PredictionFactory(study=StudyFactory(patient=patient), rejected=True)
    data = pdf_bytes(api.get(url("report", refused)))
    assert b"Not a chest X-ray the model was validated on" in data and b"grayscale" in data
    body = api.get(url("fhir", refused)).json()
    observation = next(r for r in body["contained"] if r["resourceType"] == "Observation")
    assert "valueQuantity" not in observation and observation["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert "conclusionCode" not in body


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_it_has_no_report_before_an_outcome(api, patient, status):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status=status)
    assert api.get(url("report", prediction)).status_code == 404
    assert api.get(url("fhir", prediction)).status_code == 404
    body = api.get(reverse("api:prediction-detail", args=[prediction.pk])).json()
    assert body["report"] is None and body["fhir"] is None


def test_a_review_writes_a_new_version_and_the_old_one_stays(api, reviewer, finished):
    first = pdf_bytes(api.get(url("report", finished)))
    Prediction.objects.filter(pk=finished.pk).update(review_verdict="disagree", review_label="NORMAL",
                                                     review_comment="Atelectasis, not pneumonia.",
                                                     reviewed_by=reviewer, reviewed_at=timezone.now())
    second = pdf_bytes(api.get(url("report", finished)))
    assert b"Atelectasis, not pneumonia." in second and b"Atelectasis" not in first
    assert pdf_bytes(api.get(url("report", finished, version=1))) == first
    assert api.get(url("fhir", finished)).json()["status"] == "amended"
    assert api.get(url("fhir", finished)).json()["conclusionCode"][0]["coding"][0]["code"] == "17621005"  # normal
    assert api.get(url("fhir", finished, version=1)).json()["status"] == "preliminary"
    versions = api.get(url("reports", finished)).json()
    assert [(v["version"], v["reviewed"]) for v in versions] == [(1, False), (2, True)]
    assert versions[0]["pdf"].endswith("?version=1")
    assert finished.reports.count() == 2
    pdf_bytes(api.get(url("report", finished)))  # asking again writes nothing new
    assert finished.reports.count() == 2


def test_it_answers_a_report_like_its_prediction(api, reviewer, foreign_patient, finished):
    theirs = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    assert api.get(url("report", theirs)).status_code == 404
    assert api.get(url("fhir", theirs)).status_code == 404
    assert api_client_for(reviewer).get(url("report", theirs)).status_code == 200


@pytest.mark.parametrize("version, code", [("abc", 400), ("7", 404)])
def test_it_refuses_a_version_that_is_not_there(api, finished, version, code):
    assert api.get(url("report", finished, version=version)).status_code == code


def test_the_prediction_links_its_report_and_fhir(api, finished):
    body = api.get(reverse("api:prediction-detail", args=[finished.pk])).json()
    assert body["report"].endswith(url("report", finished)) and body["fhir"].endswith(url("fhir", finished))


def test_it_reports_the_bacterial_or_viral_output_as_secondary(api, patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient, age_years="3"), bacterial=True))
    data = pdf_bytes(api.get(url("report", prediction)))
    for text in ("Bacterial or viral", "bacterial pattern more likely", "AUC 0.912 [0.880, 0.940]",
                 "children 1"):
        assert text.encode() in data, text
    body = api.get(url("fhir", prediction)).json()
    DiagnosticReport.model_validate(body)
    observations = {r["id"]: r for r in body["contained"] if r["resourceType"] == "Observation"}
    assert observations["subtype"]["valueCodeableConcept"]["coding"][0]["code"] == "53084003"  # bacterial pneumonia
    assert {"reference": "#subtype"} in body["result"]
    assert body["conclusionCode"][0]["coding"][0]["code"] == "233604007"  # the label stays PNEUMONIA
    assert observations["observation"]["valueQuantity"]["value"] == pytest.approx(0.91)


def test_it_has_no_subtype_observation_without_the_output(api, finished):
    body = api.get(url("fhir", finished)).json()
    assert [r["id"] for r in body["contained"] if r["resourceType"] == "Observation"] == ["observation"]
    assert "Secondary" not in body["conclusion"]


def test_a_review_to_normal_takes_the_subtype_out_of_the_report(api, patient, reviewer):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient, age_years="3"), bacterial=True,
                                                 review_verdict="disagree", review_label="NORMAL",
                                                 reviewed_by=reviewer, reviewed_at=timezone.now()))
    body = api.get(url("fhir", prediction)).json()
    assert [r["id"] for r in body["contained"] if r["resourceType"] == "Observation"] == ["observation"]
    assert "bacterial" not in body["conclusion"]


def test_a_borderline_result_is_equivocal_in_fhir_and_flagged_in_the_pdf(api, patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True,
                                                 probability=0.1852, threshold=0.1848, borderline=True))
    assert b"borderline, review" in pdf_bytes(api.get(url("report", prediction)))
    body = api.get(url("fhir", prediction)).json()
    DiagnosticReport.model_validate(body)
    observation = next(r for r in body["contained"] if r["id"] == "observation")
    codes = [c["coding"][0]["code"] for c in observation["interpretation"]]
    assert codes == ["POS", "E"] and "Borderline" in body["conclusion"]


def test_it_records_the_sha256_of_each_pdf_it_writes(api, finished):
    data = pdf_bytes(api.get(url("report", finished)))
    report = finished.reports.get()
    assert report.pdf_sha256 == hashlib.sha256(data).hexdigest() == hashlib.sha256(report.pdf.read()).hexdigest()


def test_it_answers_409_and_sends_nothing_when_a_pdf_is_not_the_one_stored(api, clinician, finished, caplog):
    pdf_bytes(api.get(url("report", finished)))
    report = finished.reports.get()
    tamper_with(report.pdf)
    for response in (api.get(url("report", finished)), api.get(url("report", finished, version=1))):
        assert response.status_code == 409 and response["Content-Type"] == "application/json"
        assert response.json()["detail"].startswith("This file failed its integrity check")
        assert b"%PDF-" not in response.content
    assert any(r.levelname == "ERROR" and report.pdf.name in r.getMessage() and report.pdf_sha256 in r.getMessage()
               for r in caplog.records)
    entries = integrity_failures()
    assert len(entries) == 2
    assert {(e.content_type.model, e.object_pk, e.actor, e.additional_data["field"]) for e in entries} == {
        ("report", str(report.pk), clinician, "pdf")}
    assert api.get(url("fhir", finished)).status_code == 200  # the FHIR report is on the row, not in a file


@pytest.mark.parametrize("changed", ["study image", "heatmap"])
def test_it_writes_no_report_from_a_changed_xray_or_heatmap(api, finished, changed):
    stored = finished.study.image if changed == "study image" else finished.heatmap
    tamper_with(stored)
    for name in ("report", "fhir", "reports"):
        response = api.get(url(name, finished))
        assert response.status_code == 409, name
        assert response.json()["detail"].startswith("This file failed its integrity check")
    assert finished.reports.count() == 0
    assert {e.content_type.model for e in integrity_failures()} == {"study" if changed == "study image" else "prediction"}


def test_it_answers_404_when_a_pdf_file_is_gone(api, finished):
    pdf_bytes(api.get(url("report", finished)))
    finished.reports.get().pdf.delete(save=False)
    assert api.get(url("report", finished)).status_code == 404


@pytest.mark.parametrize("endpoint", ["report", "fhir", "reports"])
def test_it_answers_404_when_the_xray_it_would_draw_is_gone(api, finished, endpoint):
    Path(finished.study.image.path).unlink()
    response = api.get(url(endpoint, finished))
    assert response.status_code == 404
    assert "file of this prediction is missing" in response.json()["detail"]
    assert not finished.reports.exists()
