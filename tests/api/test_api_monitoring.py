"""GET /api/monitoring/: performance in use against the reviewers' labels, checked against hand computation."""

import json
import math

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import Prediction
from monitoring.summary import psi, wilson

from ..base import api_client_for, verify_session
from ..factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db
URL = reverse("api:monitoring")


def seed(patient, reviewer, *, model="m-v3", sha="cd" * 32, population="adult", rows=()):
    """rows: (status, label, probability, verdict, corrected label)."""
    for status, label, probability, verdict, corrected in rows:
        PredictionFactory(study=StudyFactory(patient=patient), status=status, label=label, probability=probability,
                          model_name=model, model_sha256=sha, population=population, review_verdict=verdict,
                          review_label=corrected, reviewed_by=reviewer if verdict else None,
                          ood=status == "rejected", threshold=0.5)


ROWS = [  # 10 succeeded (7 reviewed), 2 rejected, 1 failed
    ("succeeded", "PNEUMONIA", 0.95, "agree", ""),          # TP
    ("succeeded", "PNEUMONIA", 0.85, "agree", ""),          # TP
    ("succeeded", "PNEUMONIA", 0.75, "disagree", "NORMAL"),  # FP
    ("succeeded", "NORMAL", 0.15, "agree", ""),             # TN
    ("succeeded", "NORMAL", 0.05, "agree", ""),             # TN
    ("succeeded", "NORMAL", 0.25, "agree", ""),             # TN
    ("succeeded", "NORMAL", 0.35, "disagree", "PNEUMONIA"),  # FN
    ("succeeded", "PNEUMONIA", 0.65, "", ""),
    ("succeeded", "NORMAL", 0.45, "", ""),
    ("succeeded", "NORMAL", 0.12, "", ""),
    ("rejected", "", None, "", ""),
    ("rejected", "", None, "", ""),
    ("failed", "", None, "", ""),
]


def test_every_figure_matches_a_hand_computation(reviewer, patient):
    seed(patient, reviewer, rows=ROWS)
    [group] = api_client_for(reviewer).get(URL).json()["groups"]
    assert group["model"] == {"name": "m-v3", "weights_sha256": "cd" * 32} and group["population"] == "adult"
    assert group["predictions"] == 13 and group["failed"] == 1
    assert group["refusal_rate"]["value"] == pytest.approx(2 / 12)  # of the 12 with an outcome
    assert group["reviewed_fraction"]["value"] == pytest.approx(7 / 10)
    assert group["agreement"]["value"] == pytest.approx(5 / 7)
    assert group["confusion_vs_reviewers"] == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    assert group["sensitivity"]["value"] == pytest.approx(2 / 3) and group["sensitivity"]["n"] == 3
    assert group["specificity"]["value"] == pytest.approx(3 / 4) and group["specificity"]["n"] == 4
    assert group["ppv"]["value"] == pytest.approx(2 / 3) and group["npv"]["value"] == pytest.approx(3 / 4)
    # Wilson 95 % for 2 of 3, by hand: centre (p + z²/2n)/(1 + z²/n), half z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n).
    z, n, p = 1.959963984540054, 3, 2 / 3
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert group["sensitivity"]["ci95"] == pytest.approx([centre - half, centre + half])
    assert group["probability_histogram"]["counts"] == [1, 2, 1, 1, 1, 0, 1, 1, 1, 1]


def test_it_measures_drift_against_the_deployed_cards_validation_scores(reviewer, patient, settings, tmp_path):
    validation = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    card = {"name": "m-v3", "weights_sha256": "cd" * 32,
            "populations": {"adult": {"threshold": 0.2, "temperature": 1.0, "age_band": [18, 120],
                                      "validation_histogram": {"edges": [i / 10 for i in range(11)], "counts": validation}}}}
    (tmp_path / "m.json").write_text(json.dumps(card))
    settings.PNEUMOWEB_MODEL_PATH = tmp_path / "m.safetensors"
    seed(patient, reviewer, rows=[("succeeded", "PNEUMONIA", 0.95, "", "")] * 30 + [("succeeded", "NORMAL", 0.05, "", "")] * 10)
    [group] = api_client_for(reviewer).get(URL).json()["groups"]
    live = [10, 0, 0, 0, 0, 0, 0, 0, 0, 30]
    assert group["probability_histogram"]["validation_counts"] == validation
    assert group["drift"]["psi"] == pytest.approx(psi(live, validation))
    by_hand = sum((max(o / 40, 1e-4) - 0.1) * math.log(max(o / 40, 1e-4) / 0.1) for o in live)
    assert group["drift"]["psi"] == pytest.approx(by_hand) and by_hand > 0.25
    assert group["drift"]["alert"] is True


def test_it_says_why_there_is_no_drift_statistic(reviewer, patient):
    seed(patient, reviewer, rows=ROWS)
    [group] = api_client_for(reviewer).get(URL).json()["groups"]
    assert group["drift"]["psi"] is None and group["drift"]["alert"] is False
    assert "no validation distribution" in group["drift"]["reason"]


def test_it_groups_by_model_version_and_population_and_filters(reviewer, patient):
    seed(patient, reviewer, rows=ROWS[:3])
    seed(patient, reviewer, population="pediatric", rows=ROWS[3:5])
    seed(patient, reviewer, model="m-v2", sha="ef" * 32, population="", rows=ROWS[5:6])
    api = api_client_for(reviewer)
    groups = api.get(URL).json()["groups"]
    assert [(g["model"]["name"], g["population"], g["predictions"]) for g in groups] == [
        ("m-v3", "adult", 3), ("m-v3", "pediatric", 2), ("m-v2", None, 1)]
    assert [g["population"] for g in api.get(URL, {"population": "pediatric"}).json()["groups"]] == ["pediatric"]
    assert [g["model"]["name"] for g in api.get(URL, {"model": "m-v2"}).json()["groups"]] == ["m-v2"]
    Prediction.objects.filter(model_name="m-v2").update(queued_at=timezone.now() - timezone.timedelta(days=40))
    recent = api.get(URL, {"since": (timezone.now() - timezone.timedelta(days=7)).date().isoformat()}).json()
    assert "m-v2" not in [g["model"]["name"] for g in recent["groups"]]


def test_it_exports_the_same_figures_as_csv(reviewer, patient):
    seed(patient, reviewer, rows=ROWS)
    response = api_client_for(reviewer).get(URL, {"export": "csv"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    header, row = b"".join(response.streaming_content).decode().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert values["sensitivity"] == f"{2 / 3:.4f}" and values["specificity"] == "0.7500"
    assert values["sensitivity_low"] == f"{wilson(2, 3)[0]:.4f}" and values["predictions"] == "13"


def test_it_is_for_reviewers_and_administrators(api, reviewer):
    assert api.get(URL).status_code == 403
    assert api_client_for(reviewer).get(URL).status_code == 200


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"export": "xlsx"}, {"until": ""}])
def test_it_refuses_filters_it_does_not_know(reviewer, params):
    assert api_client_for(reviewer).get(URL, params).status_code == 400


def test_refusals_count_in_the_population_their_age_gives(reviewer, patient, settings, tmp_path):
    card = {"name": "m-v3", "weights_sha256": "cd" * 32, "populations": {
        "pediatric": {"threshold": 0.08, "temperature": 1.0, "age_band": [0, 18]},
        "adult": {"threshold": 0.2, "temperature": 1.0, "age_band": [18, 121]}}}
    (tmp_path / "m.json").write_text(json.dumps(card))
    settings.PNEUMOWEB_MODEL_PATH = tmp_path / "m.safetensors"
    seed(patient, reviewer, rows=ROWS[:2])  # adults, scored
    for age in ("4", "45"):
        PredictionFactory(study=StudyFactory(patient=patient, age_years=age), rejected=True, model_name="m-v3",
                          model_sha256="cd" * 32, population="")
    groups = {g["population"]: g for g in api_client_for(reviewer).get(URL).json()["groups"]}
    assert set(groups) == {"adult", "pediatric"}
    assert groups["adult"]["predictions"] == 3 and groups["adult"]["refusal_rate"]["value"] == pytest.approx(1 / 3)
    assert groups["pediatric"]["predictions"] == 1 and groups["pediatric"]["refusal_rate"]["value"] == 1.0


def test_without_the_models_card_refusals_make_one_row_without_a_chart(reviewer, patient, client):
    seed(patient, reviewer, rows=ROWS[:2])
    seed(patient, reviewer, population="", rows=ROWS[10:12])
    groups = {g["population"]: g for g in api_client_for(reviewer).get(URL).json()["groups"]}
    refused = groups["refused before a population"]
    assert refused["refused_only"] is True and refused["predictions"] == 2 and groups["adult"]["refused_only"] is False
    client.force_login(reviewer)
    verify_session(client, reviewer)
    html = client.get(reverse("monitoring")).content.decode()
    assert html.count('data-testid="monitoring-chart"') == 1  # the adults' chart only
    assert ">refused before a population<" in html
