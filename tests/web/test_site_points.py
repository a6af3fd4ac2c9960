"""Site calibration: reviewed studies → proposal → apply → the next predictions use the site's point and say so."""

import json
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from diagnosis import site_points
from diagnosis.jobs import tasks
from diagnosis.models import Prediction, SiteOperatingPoint
from diagnosis.services import drawn_for_review

from ..base import make_admin
from ..factories import PatientFactory, PredictionFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


def served_sha():
    return site_points.served_card().weights_sha256


def reviewed_site(*, positives=80, negatives=80, films_per_patient=1, population="pediatric", sample_every=4,
                  reviewed_at=None, seed=0):
    """A site's reviewed studies: positives score 0.3–1.0, negatives 0.0–0.5 (the card's point is far lower)."""
    rng = np.random.default_rng(seed)
    reviewer = UserFactory(role="reviewer")
    reviewed_at = reviewed_at or timezone.now() - timedelta(hours=1)
    made = []
    for truth, count, low, high in ((Prediction.Label.PNEUMONIA, positives, 0.3, 1.0),
                                    (Prediction.Label.NORMAL, negatives, 0.0, 0.5)):
        for _ in range(count):
            patient = PatientFactory()
            for _ in range(films_per_patient):
                probability = float(rng.uniform(low, high))
                label = Prediction.Label.PNEUMONIA if probability >= 0.069 else Prediction.Label.NORMAL
                agree = label == truth
                made.append(PredictionFactory(
                    succeeded=True, study=StudyFactory(patient=patient, age_years=Decimal("3")),
                    population=population, model_sha256=served_sha(), probability=probability, label=label,
                    review_verdict="agree" if agree else "disagree", review_label="" if agree else truth,
                    reviewed_by=reviewer, reviewed_at=reviewed_at, review_sample=len(made) % sample_every == 0))
    return made


def run(prediction):
    tasks.run_prediction.apply(kwargs={"prediction_pk": prediction.pk})
    prediction.refresh_from_db()
    return prediction


def test_it_proposes_a_point_from_the_sites_reviews_and_writes_nothing():
    reviewed_site()
    proposal = site_points.propose("pediatric")
    f = proposal.figures
    assert not proposal.refused and SiteOperatingPoint.objects.count() == 0
    assert (f["films"], f["patients"], f["positive_patients"], f["negative_patients"]) == (160, 160, 80, 80)
    assert f["reviewed_films_from_random_sample"] == 40 and f["reviewed_films_chosen_by_reviewers"] == 120
    assert "flagged and borderline" in f["bias"]
    assert f["current_is"] == "the model card's operating point" and f["current_threshold"] == f["card_threshold"]
    assert f["threshold"] > f["current_threshold"]  # the card's point calls every negative here PNEUMONIA
    assert f["proposed"]["specificity"]["value"] > f["current"]["specificity"]["value"]
    assert f["proposed"]["recall"]["value"] >= f["min_recall"]
    low, high = f["proposed"]["recall"]["ci95"]
    assert low <= f["proposed"]["recall"]["value"] <= high
    assert f["band"][0] <= f["threshold"] <= f["band"][1]


def test_too_few_reviews_are_refused_with_the_counts():
    reviewed_site(positives=12, negatives=70)
    proposal = site_points.propose("pediatric")
    assert proposal.refused
    assert "12 confirmed PNEUMONIA patients" in proposal.figures["refusals"][0]
    assert "at least 50 of each" in proposal.figures["refusals"][0]
    with pytest.raises(site_points.CalibrationRefused, match="12 confirmed PNEUMONIA patients"):
        site_points.apply("pediatric", by=make_admin())
    assert SiteOperatingPoint.objects.count() == 0


def test_no_reviews_at_all_are_refused_with_the_counts():
    proposal = site_points.propose("adult")
    assert proposal.refused and "0 confirmed PNEUMONIA patients and 0 confirmed NORMAL patients" in \
        proposal.figures["refusals"][0]


def test_a_patients_films_count_once_and_are_resampled_together():
    reviewed_site(positives=60, negatives=60, films_per_patient=3)
    f = site_points.propose("pediatric").figures
    assert (f["films"], f["patients"], f["positive_patients"]) == (360, 120, 60)


@override_settings(PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS=5)
def test_a_recall_interval_too_far_under_the_floor_is_refused():
    reviewed_site(positives=6, negatives=6)
    proposal = site_points.propose("pediatric")
    assert proposal.refused and "could be as low as" in proposal.figures["refusals"][-1]


def test_refused_studies_other_weights_and_later_reviews_are_not_evidence():
    reviewed_site()
    before = site_points.propose("pediatric").figures["films"]
    PredictionFactory(rejected=True, population="pediatric", model_sha256=served_sha(), review_verdict="agree",
                      reviewed_at=timezone.now() - timedelta(hours=1))
    PredictionFactory(succeeded=True, population="pediatric", model_sha256="cd" * 32, review_verdict="agree",
                      reviewed_at=timezone.now() - timedelta(hours=1))
    PredictionFactory(succeeded=True, population="adult", model_sha256=served_sha(), review_verdict="agree",
                      reviewed_at=timezone.now() - timedelta(hours=1))
    assert site_points.propose("pediatric").figures["films"] == before
    later = timezone.now() - timedelta(hours=2)
    assert site_points.propose("pediatric", now=later).figures["films"] == 0


def test_applied_point_labels_the_next_predictions_and_they_say_so():
    reviewed_site()
    admin = make_admin()
    point = site_points.apply("pediatric", by=admin)
    assert point.status == SiteOperatingPoint.Status.ACTIVE and point.approved_by == admin
    assert point.figures["threshold"] == point.threshold and point.evidence_until <= point.active_from
    child = run(PredictionFactory(study__age_years=Decimal("3")))
    adult = run(PredictionFactory(study__age_years=Decimal("40")))
    assert child.site_point == point and child.threshold == pytest.approx(point.threshold)
    assert child.label == ("PNEUMONIA" if child.probability >= point.threshold else "NORMAL")
    assert child.operating_point == f"site operating point of {timezone.now().date().isoformat()} (#{point.pk})"
    assert adult.site_point is None and adult.operating_point == "the model card's operating point"


def test_a_prediction_already_made_never_changes_and_revert_is_one_step():
    reviewed_site()
    admin = make_admin()
    before = run(PredictionFactory(study__age_years=Decimal("3")))
    point = site_points.apply("pediatric", by=admin)
    before.refresh_from_db()
    assert before.site_point is None and before.threshold != pytest.approx(point.threshold)
    [ended] = site_points.revert("pediatric", by=admin)
    assert ended.pk == point.pk and ended.status == SiteOperatingPoint.Status.REVERTED and ended.ended_by == admin
    after = run(PredictionFactory(study__age_years=Decimal("3")))
    assert after.site_point is None and after.threshold == pytest.approx(before.threshold)
    with pytest.raises(site_points.CalibrationRefused, match="already the model card's"):
        site_points.revert("pediatric", by=admin)


def test_a_second_point_supersedes_the_first():
    reviewed_site()
    admin = make_admin()
    first = site_points.apply("pediatric", by=admin)
    second = site_points.apply("pediatric", by=admin)
    first.refresh_from_db()
    assert first.status == SiteOperatingPoint.Status.SUPERSEDED and second.status == SiteOperatingPoint.Status.ACTIVE
    assert second.figures["current_is"] == first.described
    assert list(site_points.active_points(served_sha())) == ["pediatric"]


@override_settings(PNEUMOWEB_ERASURE_TWO_PERSON=True)
def test_under_the_two_person_rule_another_administrator_approves():
    reviewed_site()
    first, second = make_admin("admin-one"), make_admin("admin-two")
    point = site_points.apply("pediatric", by=first)
    assert point.status == SiteOperatingPoint.Status.PROPOSED and site_points.active_points(served_sha()) == {}
    with pytest.raises(site_points.CalibrationRefused, match="second administrator"):
        site_points.approve(point, by=first)
    with pytest.raises(site_points.CalibrationRefused, match="already waiting"):
        site_points.apply("pediatric", by=first)
    site_points.approve(point, by=second)
    assert point.status == SiteOperatingPoint.Status.ACTIVE and point.approved_by == second
    with pytest.raises(site_points.CalibrationRefused, match="not waiting"):
        site_points.approve(point, by=second)


def test_only_an_administrator_changes_points():
    reviewed_site()
    with pytest.raises(site_points.CalibrationRefused, match="Only an administrator"):
        site_points.apply("pediatric", by=UserFactory(role="reviewer"))


def test_every_change_is_on_the_audit_trail_with_who_made_it():
    from auditlog.models import LogEntry

    reviewed_site()
    admin = make_admin()
    point = site_points.apply("pediatric", by=admin)
    site_points.revert("pediatric", by=admin)
    entries = LogEntry.objects.get_for_object(point)
    assert entries.count() >= 3 and {entry.actor for entry in entries} == {admin}


def test_an_unknown_population_is_refused():
    with pytest.raises(site_points.CalibrationRefused, match="Unknown population 'elderly'.*pediatric, adult"):
        site_points.propose("elderly")


# --- the random review sample ---------------------------------------------------------------------


def test_the_random_sample_draws_the_configured_share():
    with override_settings(PNEUMOWEB_REVIEW_SAMPLE_SHARE=0.0):
        assert not any(drawn_for_review() for _ in range(200))
    with override_settings(PNEUMOWEB_REVIEW_SAMPLE_SHARE=1.0):
        assert all(drawn_for_review() for _ in range(200))
    with override_settings(PNEUMOWEB_REVIEW_SAMPLE_SHARE=0.5):
        drawn = sum(drawn_for_review() for _ in range(400))
        assert 140 < drawn < 260


# --- the command ----------------------------------------------------------------------------------


def command(*args):
    from io import StringIO

    out = StringIO()
    call_command("calibrate_site", *args, stdout=out)
    return out.getvalue()


def test_the_command_shows_the_proposal_and_its_json():
    reviewed_site()
    text = command("--population", "pediatric")
    assert "160 reviewed films of 160 patients" in text and "proposed threshold" in text
    assert "95 % bootstrap over patients" in text
    data = json.loads(command("--population", "pediatric", "--json"))
    assert data["refused"] is False and data["positive_patients"] == 80
    assert SiteOperatingPoint.objects.count() == 0


def test_the_command_applies_and_reverts():
    reviewed_site()
    make_admin("boss")
    applied = json.loads(command("--population", "pediatric", "--apply", "--by", "boss", "--json"))
    assert applied["status"] == "active" and SiteOperatingPoint.objects.get().pk == applied["id"]
    assert "model card's again" in command("--population", "pediatric", "--revert", "--by", "boss")


@pytest.mark.parametrize("args, message", [
    (["--population", "elderly"], "Unknown population 'elderly'"),
    ([], "Name the population with --population"),
    (["--population", "pediatric", "--apply"], "Say who you are with --by"),
    (["--population", "pediatric", "--apply", "--by", "nobody"], "'nobody' is not an active administrator"),
    (["--approve", "999", "--by", "boss"], "There is no site point 999"),
    (["--population", "pediatric", "--revert", "--by", "boss"], "already the model card's"),
])
def test_the_command_refuses_bad_input_with_a_sentence(args, message):
    make_admin("boss")
    with pytest.raises(CommandError, match=message):
        command(*args)


def test_a_refused_proposal_exits_with_status_2():
    reviewed_site(positives=3, negatives=3)
    with pytest.raises(CommandError) as refused:
        command("--population", "pediatric")
    assert refused.value.returncode == 2


# --- the page -------------------------------------------------------------------------------------

PAGE = "/monitoring/site-points/"


def admin_client():
    from ..base import signed_in_client

    return signed_in_client(make_admin("page-admin"))


def test_reviewers_see_the_proposal_and_history_but_no_forms(reviewer_client):
    reviewed_site()
    html = reviewer_client.get(PAGE).content.decode()
    assert 'data-testid="site-proposal"' in html and "160 reviewed films of 160 patients" in html
    assert "the model card&#x27;s operating point" in html or "the model card's operating point" in html
    assert 'data-testid="site-apply"' not in html and 'data-testid="site-revert"' not in html
    assert reviewer_client.post(PAGE, {"action": "revert", "population": "pediatric"}).status_code == 403


def test_clinicians_may_not_see_it(logged_in):
    assert logged_in.get(PAGE).status_code == 403
    assert logged_in.post(PAGE, {"action": "apply", "population": "pediatric"}).status_code == 403


def test_an_administrator_applies_the_figures_shown_and_reverts():
    reviewed_site()
    client = admin_client()
    html = client.get(PAGE).content.decode()
    assert 'data-testid="site-apply"' in html and "I have read the figures above" in html
    shown = site_points.propose("pediatric").evidence_until
    late_reviewer = UserFactory(role="reviewer")  # reviewed after the page was shown: not counted
    PredictionFactory(succeeded=True, population="pediatric", model_sha256=served_sha(), probability=0.99,
                      review_verdict="agree", reviewed_by=late_reviewer, reviewed_at=timezone.now() + timedelta(seconds=5))
    response = client.post(PAGE, {"action": "apply", "population": "pediatric", "confirm": "yes",
                                  "evidence_until": shown.isoformat()})
    assert response.status_code == 302
    point = SiteOperatingPoint.objects.get()
    assert point.status == "active" and point.figures["films"] == 160 and point.evidence_until == shown
    html = client.get(PAGE).content.decode()
    assert point.described in html and 'data-testid="site-history"' in html
    assert client.post(PAGE, {"action": "revert", "population": "pediatric"}).status_code == 302
    assert SiteOperatingPoint.objects.get().status == "reverted"


@pytest.mark.parametrize("data, message", [
    ({"action": "apply", "population": "pediatric", "evidence_until": "2026-01-01T00:00:00+00:00"},
     "Tick the box"),
    ({"action": "apply", "population": "elderly", "confirm": "yes", "evidence_until": "2026-01-01T00:00:00+00:00"},
     "Unknown population"),
    ({"action": "apply", "population": "pediatric", "confirm": "yes", "evidence_until": "yesterday"},
     "lost its time"),
    ({"action": "apply", "population": "pediatric", "confirm": "yes", "evidence_until": "2026-01-01T00:00:00+00:00"},
     "Too few reviewed studies"),
    ({"action": "approve", "point": "x"}, "Name the site point"),
    ({"action": "revert", "population": "pediatric"}, "already the model card"),
    ({"action": "explode"}, "Unknown action"),
])
def test_bad_input_from_the_page_is_a_400_with_a_sentence(data, message):
    response = admin_client().post(PAGE, data)
    assert response.status_code == 400 and message in response.content.decode().replace("&#x27;", "'")
    assert SiteOperatingPoint.objects.count() == 0


def test_approving_a_point_that_does_not_exist_is_a_404():
    assert admin_client().post(PAGE, {"action": "approve", "point": "999"}).status_code == 404


# --- the random sample's queue, and what each output says -----------------------------------------


def test_the_review_queue_has_a_random_sample_mode(reviewer_client, patient):
    flagged = PredictionFactory(succeeded=True, borderline=True, study=StudyFactory(patient=patient))
    sampled = PredictionFactory(succeeded=True, review_sample=True, label="NORMAL", study=StudyFactory(patient=patient))
    PredictionFactory(rejected=True, review_sample=True, study=StudyFactory(patient=patient))  # no label to confirm
    main = reviewer_client.get("/review/").content.decode()
    assert "Random sample (1 waiting)" in main
    sample = reviewer_client.get("/review/?queue=sample")
    assert list(sample.context["predictions"]) == [sampled]
    assert flagged not in sample.context["predictions"]
    response = reviewer_client.post(f"/predictions/{sampled.pk}/review/", {"review_verdict": "agree"})
    assert response.status_code == 302 and response["Location"] == f"/predictions/{sampled.pk}/"  # none left in it


def test_the_api_filters_the_random_sample(reviewer):
    from ..base import api_client_for

    sampled = PredictionFactory(succeeded=True, review_sample=True)
    PredictionFactory(succeeded=True)
    body = api_client_for(reviewer).get("/api/predictions/?review_sample=true&reviewed=false").json()
    assert [row["id"] for row in body["results"]] == [sampled.pk] and body["results"][0]["review_sample"] is True


def test_page_api_pdf_fhir_and_sr_say_whose_point_labelled_it(reviewer, monkeypatch):
    from reportlab import rl_config

    from diagnosis.reports import current_report
    from pacs.exports import result_of

    from ..base import api_client_for, signed_in_client

    reviewed_site()
    point = site_points.apply("pediatric", by=make_admin())
    prediction = run(PredictionFactory(study__age_years=Decimal("3")))
    said = f"site operating point of {point.active_from.date().isoformat()} (#{point.pk})"
    page = signed_in_client(reviewer).get(f"/predictions/{prediction.pk}/").content.decode()
    assert said.capitalize() in page
    body = api_client_for(reviewer).get(f"/api/predictions/{prediction.pk}/").json()
    assert body["operating_point"] == said and body["site_point"] == point.pk
    monkeypatch.setattr(rl_config, "pageCompression", 0)  # the PDF's text readable from its bytes
    report = current_report(prediction)
    assert f"site operating point of {point.active_from.date().isoformat()}".encode() in report.pdf.read()
    assert said in json.dumps(report.fhir)
    assert result_of(prediction).operating_point == said


def test_the_api_refuses_a_review_sample_filter_that_is_not_a_boolean(reviewer):
    from ..base import api_client_for

    response = api_client_for(reviewer).get("/api/predictions/?review_sample=2")
    assert response.status_code == 400 and "review_sample" in response.json()
