"""GET /predictions/<id>/heatmap/<branch>.png: a prediction's heatmap PNG, only as the one stored."""

import pytest
from django.urls import reverse

from diagnosis.models import Prediction

from ..base import integrity_failures, tamper_with
from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db

BRANCHES = list(Prediction.HEATMAP_BRANCHES)


def url(prediction, branch):
    return reverse("prediction_heatmap", args=[prediction.pk, branch])


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def mapped(patient):
    return with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))


@pytest.mark.parametrize("branch", BRANCHES)
def test_it_serves_each_heatmap_as_stored(logged_in, mapped, branch):
    stored = getattr(mapped, Prediction.HEATMAP_BRANCHES[branch])
    response = logged_in.get(url(mapped, branch))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    data = body(response)
    assert data == stored.read() and data.startswith(b"\x89PNG")
    assert integrity_failures() == []


@pytest.mark.parametrize("branch", BRANCHES)
def test_it_answers_409_and_sends_nothing_when_a_heatmap_is_not_the_one_stored(logged_in, clinician, mapped, branch,
                                                                             caplog):
    field = Prediction.HEATMAP_BRANCHES[branch]
    stored = getattr(mapped, field)
    tampered = tamper_with(stored)
    response = logged_in.get(url(mapped, branch))
    assert response.status_code == 409
    assert tampered not in body(response) and b"\x89PNG" not in body(response)
    assert b"This file failed its integrity check" in body(response)
    assert any(r.levelname == "ERROR" and stored.name in r.getMessage() and getattr(mapped, f"{field}_sha256")
               in r.getMessage() for r in caplog.records)
    [entry] = integrity_failures()
    assert (entry.content_type.model, entry.object_pk, entry.actor) == ("prediction", str(mapped.pk), clinician)
    assert entry.additional_data["field"] == field and entry.additional_data["file"] == stored.name


def test_it_answers_404_when_the_heatmap_file_is_gone(logged_in, mapped):
    mapped.heatmap_vit.delete(save=False)
    assert logged_in.get(url(mapped, "vit")).status_code == 404
    assert integrity_failures() == []


def test_it_answers_404_for_a_branch_it_does_not_know(logged_in, mapped):
    assert logged_in.get(url(mapped, "nope")).status_code == 404


def test_it_serves_a_heatmap_whose_digest_was_never_recorded_and_warns(logged_in, mapped, caplog):
    # Written before digests were kept and missing when they were filled in: verify_files lists it.
    Prediction.objects.filter(pk=mapped.pk).update(heatmap_cnn_sha256="")
    response = logged_in.get(url(mapped, "cnn"))
    assert response.status_code == 200 and body(response) == mapped.heatmap_cnn.read()
    assert any(r.levelname == "WARNING" and "no recorded sha256" in r.getMessage() for r in caplog.records)
    assert integrity_failures() == []
