import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import Prediction

from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db


def url(prediction):
    return reverse("prediction_detail", args=[prediction.pk])


def test_it_requires_login(client, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = client.get(url(prediction))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_answers_404_for_another_clinicians_prediction(logged_in, foreign_patient):
    prediction = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    response = logged_in.get(url(prediction))
    assert response.status_code == 404
    assert foreign_patient.name not in response.content.decode()


def test_it_answers_404_for_an_unknown_prediction(logged_in):
    assert logged_in.get(reverse("prediction_detail", args=[987654])).status_code == 404


def test_it_shows_a_reviewer_anyones_prediction(reviewer_client, foreign_patient):
    prediction = PredictionFactory(study=StudyFactory(patient=foreign_patient), succeeded=True)
    response = reviewer_client.get(url(prediction))
    assert response.status_code == 200 and foreign_patient.name in response.content.decode()


def test_it_shows_a_succeeded_result(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient, view="AP", age_years="4.5"), succeeded=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="prediction-status" id="status">succeeded<' in html
    assert 'data-testid="prediction-label" id="label" class="label-pneumonia">PNEUMONIA<' in html
    assert 'data-testid="prediction-probability" id="probability-percent">91.0%<' in html
    assert 'id="probability-bar" data-width="91%"' in html  # sized by the page script: the CSP allows no inline style
    assert "Confidence" not in html  # a P(label) reads as certainty where the threshold is low
    assert 'id="threshold">50.0%<' in html and 'id="threshold-bar" data-testid="threshold-mark" data-width="50.0%"' in html
    assert 'id="probability"' not in html  # one number, one format: P(pneumonia) once, as a percentage
    assert 'id="model">compact-test@abababababab<' in html
    assert f'src="{reverse("study_image", args=[prediction.study_id])}"' in html
    assert f'href="{reverse("patient_detail", args=[patient.pk])}"' in html and patient.mrn in html
    assert "4.50 years" in html and "Frontal AP" in html
    assert prediction.study.uploaded_at.strftime("%Y-%m-%d") in html
    assert "Decision support, not a diagnosis" in html
    assert '<div id="outcome" >' in html or '<div id="outcome">' in html  # not hidden
    assert '<div id="pending" hidden>' in html


def test_it_marks_a_result_outside_the_validated_population(logged_in, patient):
    warnings = ["Age 45 years is outside the ages the model was validated on (1–5 years): its answer is less reliable."]
    prediction = PredictionFactory(study=StudyFactory(patient=patient, age_years="45"), succeeded=True, warnings=warnings)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="intended-use-warnings" role="alert" >' in html
    assert "<li>Age 45 years is outside the ages the model was validated on (1–5 years)" in html
    assert 'data-testid="prediction-label" id="label" class="label-pneumonia">PNEUMONIA<' in html


def test_it_overlays_the_heatmap_with_controls(logged_in, patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    html = logged_in.get(url(prediction)).content.decode()
    src = reverse("prediction_heatmap", args=[prediction.pk, "combined"])
    assert f'src="{src}"' in html and 'id="heatmap-controls" >' in html
    for branch in ("combined", "cnn", "vit"):
        response = logged_in.get(reverse("prediction_heatmap", args=[prediction.pk, branch]))
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Client().get(src).status_code == 302  # login required


def test_it_offers_the_vit_map_only_where_the_job_stored_one(logged_in, patient):
    with_vit = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    assert '<option value="vit">ViT</option>' in logged_in.get(url(with_vit)).content.decode()
    cnn_only = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, heatmap="heatmaps/x.png",
                                 heatmap_cnn="heatmaps/x.png")
    html = logged_in.get(url(cnn_only)).content.decode()
    assert 'id="heatmap-branch"' in html and '<option value="vit">' not in html


def test_it_gives_no_verdict_for_a_rejected_input(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), rejected=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="prediction-rejected" >' in html
    assert "Not a chest X-ray the model was validated on" in html
    assert '<span id="ood-reason">The image is in colour; chest X-rays are grayscale.</span>' in html
    assert '<div id="outcome" hidden>' in html


def test_it_hides_the_warning_list_when_there_is_none(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert 'data-testid="intended-use-warnings" role="alert" hidden>' in logged_in.get(url(prediction)).content.decode()


def test_it_shows_p_pneumonia_not_a_confidence_for_a_normal_label(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, label="NORMAL", probability=0.127)
    html = logged_in.get(url(prediction)).content.decode()
    assert ">NORMAL<" in html and 'id="probability-percent">12.7%<' in html and 'data-width="13%"' in html
    assert "0.1270" not in html and "87.3%" not in html


def test_it_flags_a_borderline_result_and_explains_the_threshold(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, probability=0.1852,
                                   threshold=0.1848, population="adult", borderline=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="prediction-borderline" >borderline — review<' in html
    assert ('id="threshold">18.5%</span> (the line on the bar) for <span id="population" '
            'data-testid="prediction-population">adult</span>') in html
    assert "results at or above it are flagged PNEUMONIA" in html and "18.5%" in html
    calm = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert 'data-testid="prediction-borderline" hidden>' in logged_in.get(url(calm)).content.decode()


@pytest.mark.parametrize("status", ["queued", "running"])
def test_it_polls_while_unfinished(logged_in, patient, status):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status=status)
    html = logged_in.get(url(prediction)).content.decode()
    assert f'data-testid="prediction-status" id="status">{status}<' in html
    assert f'data-api-url="{reverse("api:prediction-detail", args=[prediction.pk])}"' in html
    assert "/static/js/prediction-poll.js" in html
    assert 'class="spinner"' in html and "this page updates itself" in html
    assert '<div id="outcome" hidden>' in html


def test_it_shows_the_error_of_a_failed_job(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="failed", error="Timed out after 120 s.")
    html = logged_in.get(url(prediction)).content.decode()
    assert 'id="status">failed<' in html
    assert '<span id="error">Timed out after 120 s.</span>' in html
    assert '<div id="failure" >' in html or '<div id="failure">' in html


def test_it_says_when_a_job_was_cancelled(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="cancelled")
    html = logged_in.get(url(prediction)).content.decode()
    assert 'id="status">cancelled<' in html and "was cancelled before it finished" in html


def test_it_escapes_the_error_message(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="failed", error="<script>x()</script>")
    html = logged_in.get(url(prediction)).content.decode()
    assert "<script>x()</script>" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html


def test_it_warns_about_untrained_weights(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, model_name="compact-untrained-seed0")
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="untrained-warning" >' in html or 'data-testid="untrained-warning">' in html
    assert "untrained weights" in html and "not clinically meaningful" in html


def test_it_hides_the_untrained_warning_for_trained_weights(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    assert 'data-testid="untrained-warning" hidden>' in logged_in.get(url(prediction)).content.decode()


def test_it_shows_the_review(logged_in, patient, reviewer):
    prediction = PredictionFactory(
        study=StudyFactory(patient=patient), succeeded=True, review_verdict="disagree", review_label="NORMAL",
        review_comment="Normal thymus.", reviewed_by=reviewer, reviewed_at=timezone.now(),
    )
    html = logged_in.get(url(prediction)).content.decode()
    assert "Disagree" in html and "corrected label NORMAL" in html and "Normal thymus." in html
    assert reviewer.username in html


def test_it_serves_the_polled_api_to_the_browser_session(logged_in, patient):
    """The script fetches the API with the page's session cookie; no token is needed."""
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    response = logged_in.get(reverse("api:prediction-detail", args=[prediction.pk]), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["label"] == "PNEUMONIA"
    assert body["confidence"] == pytest.approx(0.91) and body["model"]["weights_sha256"] == "ab" * 32


# --- the polling script, run in Node against the rendered page ---------------------------


class IdCollector(HTMLParser):
    """Elements with an id: their attributes and text, as the script sees them."""

    VOID = {"img", "input", "br", "meta", "link", "hr", "source"}

    def __init__(self):
        super().__init__()
        self.elements, self.open, self.badge = {}, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        record = {"attrs": attrs, "text": "", "hidden": "hidden" in attrs, "className": attrs.get("class") or ""}
        if "badge" in (attrs.get("class") or "").split() and self.badge is None:
            self.badge = record
        if attrs.get("id"):
            self.elements[attrs["id"]] = record
        if tag not in self.VOID:
            self.open.append(record)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.open:
            self.open.pop()

    def handle_data(self, data):
        for record in self.open:
            record["text"] += data


POLL_HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const els = {};
for (const [id, e] of Object.entries(input.elements)) {
  els[id] = { textContent: e.text, hidden: e.hidden, className: e.className, style: { width: "" },
              getAttribute: (name) => (name in e.attrs ? e.attrs[name] : null) };
}
const badge = { textContent: input.badge.text, className: input.badge.className };
global.document = {
  getElementById: (id) => els[id] || null,
  querySelector: (sel) => (sel === ".heading .badge" ? badge : null),
};
const fetches = [];
const responses = input.responses.slice();
global.fetch = (url, options) => {
  fetches.push({ url, options });
  const r = responses.length > 1 ? responses.shift() : responses[0];
  return Promise.resolve({ status: r.status, ok: r.status >= 200 && r.status < 300, json: () => Promise.resolve(r.body) });
};
const delays = [];
const timers = [];
global.setTimeout = (fn, ms) => { delays.push(ms); timers.push(fn); };
require(input.script);
(async () => {
  for (let i = 0; i < 20 && timers.length; i++) {
    timers.shift()();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const out = {};
  for (const [id, el] of Object.entries(els)) {
    out[id] = { text: el.textContent, hidden: el.hidden, className: el.className, width: el.style.width };
  }
  process.stdout.write(JSON.stringify({ elements: out, badge, fetches, delays, pending: timers.length }));
})();
"""


def run_poll_script(client, prediction, responses):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    page = IdCollector()
    page.feed(client.get(url(prediction)).content.decode())
    script = Path(django_settings.BASE_DIR) / "static" / "js" / "prediction-poll.js"
    payload = {"script": str(script), "elements": page.elements, "badge": page.badge, "responses": responses}
    result = subprocess.run([node, "-e", POLL_HARNESS], input=json.dumps(payload), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def api_body(client, prediction, **changes):
    Prediction.objects.filter(pk=prediction.pk).update(**changes)
    response = client.get(reverse("api:prediction-detail", args=[prediction.pk]))
    assert response.status_code == 200
    return {"status": 200, "body": response.json()}


def test_it_fills_in_the_result_without_a_reload(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    # The page is rendered while queued; the API then says running, then succeeded.
    now = timezone.now()
    running = api_body(logged_in, prediction, status="running", started_at=now)
    succeeded = api_body(
        logged_in, prediction, status="succeeded", label="NORMAL", probability=0.127, threshold=0.5,
        model_name="compact-v1", model_sha256="cd" * 32, finished_at=now,
    )
    Prediction.objects.filter(pk=prediction.pk).update(status="queued", label="", probability=None, started_at=None)

    out = run_poll_script(logged_in, prediction, [running, succeeded])
    els = out["elements"]
    assert els["status"]["text"] == "succeeded"
    assert out["badge"] == {"textContent": "succeeded", "className": "badge badge-succeeded"}
    assert els["label"]["text"] == "NORMAL" and els["label"]["className"] == "label-normal"
    assert els["probability-percent"]["text"] == "12.7%" and els["probability-bar"]["width"] == "13%"
    assert els["borderline"]["hidden"] is True
    assert els["threshold"]["text"] == "50.0%" and els["threshold-bar"]["width"] == "50.0%"
    assert els["model"]["text"] == "compact-v1@cdcdcdcdcdcd"
    # One time format: the server's HH:MM:SS, as the page rendered it, never the browser's "7:14:22 PM".
    assert re.fullmatch(r"\d\d:\d\d:\d\d / \d\d:\d\d:\d\d / \d\d:\d\d:\d\d", els["timings"]["text"]), els["timings"]
    assert els["timings"]["text"].split(" / ")[2] == timezone.localtime(now).strftime("%H:%M:%S")
    assert els["outcome"]["hidden"] is False and els["pending"]["hidden"] is True
    assert els["failure"]["hidden"] is True and els["untrained-warning"]["hidden"] is True
    # It asked the API twice with the session cookie, every second, and then stopped.
    api_url = reverse("api:prediction-detail", args=[prediction.pk])
    assert [f["url"] for f in out["fetches"]] == [api_url, api_url]
    assert all(f["options"]["credentials"] == "same-origin" for f in out["fetches"])
    assert all(1000 <= d <= 2000 for d in out["delays"]) and out["pending"] == 0


def test_it_fills_in_a_failure_live(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), status="running")
    failed = api_body(logged_in, prediction, status="failed", error="Out of memory.")
    Prediction.objects.filter(pk=prediction.pk).update(status="running", error="")
    els = run_poll_script(logged_in, prediction, [failed])["elements"]
    assert els["status"]["text"] == "failed"
    assert els["failure"]["hidden"] is False and els["error"]["text"] == "Out of memory."
    assert els["outcome"]["hidden"] is True and els["pending"]["hidden"] is True


def test_it_shows_the_untrained_warning_when_the_result_arrives(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    done = api_body(
        logged_in, prediction, status="succeeded", label="PNEUMONIA", probability=0.6, threshold=0.5,
        model_name="compact-untrained-seed0", model_sha256="ef" * 32,
    )
    Prediction.objects.filter(pk=prediction.pk).update(status="queued", label="", probability=None, model_name="")
    els = run_poll_script(logged_in, prediction, [done])["elements"]
    assert els["untrained-warning"]["hidden"] is False
    assert els["label"]["text"] == "PNEUMONIA" and els["probability-percent"]["text"] == "60.0%"


def test_it_stops_polling_when_the_session_is_gone(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    out = run_poll_script(logged_in, prediction, [{"status": 403, "body": {"detail": "no"}}])
    assert len(out["fetches"]) == 1 and out["pending"] == 0
    assert out["elements"]["poll-error"]["hidden"] is False
    assert out["elements"]["status"]["text"] == "queued"


def test_it_retries_polling_after_a_server_error(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient))
    done = api_body(logged_in, prediction, status="cancelled")
    Prediction.objects.filter(pk=prediction.pk).update(status="queued")
    out = run_poll_script(logged_in, prediction, [{"status": 502, "body": None}, done])
    assert len(out["fetches"]) == 2 and out["delays"][1] > out["delays"][0]
    assert out["elements"]["status"]["text"] == "cancelled" and out["elements"]["cancelled"]["hidden"] is False


def test_it_does_not_poll_on_a_finished_page(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    out = run_poll_script(logged_in, prediction, [{"status": 500, "body": None}])
    assert out["fetches"] == [] and out["delays"] == []


def test_it_shows_the_bacterial_or_viral_output_as_secondary(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient, age_years="3"), bacterial=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'id="subtype-label">bacterial<' in html and 'id="subtype-probability">83.0%<' in html
    assert "0.912 [0.880, 0.940]" in html and "never changes the label" in html
    assert 'class="label-pneumonia">PNEUMONIA<' in html


def test_it_hides_the_subtype_when_none_was_given(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert 'data-testid="prediction-subtype" hidden' in html


def test_the_fhir_report_is_a_download_with_a_file_name(logged_in, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    html = logged_in.get(url(prediction)).content.decode()
    assert f'download="pneumoweb-prediction-{prediction.pk}-fhir.json"' in html


def test_the_header_names_an_administrator_as_one(patient):
    from ..base import make_admin, signed_in_client

    html = signed_in_client(make_admin("head-admin")).get("/").content.decode()
    assert "head-admin · administrator" in html and "head-admin · reviewer" not in html
