import io
from decimal import Decimal
from pathlib import Path

import pytest
import skimage.data
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.base import ContentFile
from PIL import Image

from diagnosis import tasks
from diagnosis.models import Prediction

from .factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


def run(prediction):
    tasks.run_prediction.apply(kwargs={"prediction_pk": prediction.pk})
    prediction.refresh_from_db()
    return prediction


def test_it_runs_a_queued_prediction_with_the_real_model():
    prediction = run(PredictionFactory())
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert 0.0 <= prediction.probability <= 1.0
    expected = "PNEUMONIA" if prediction.probability >= prediction.threshold else "NORMAL"
    assert prediction.label == expected
    assert prediction.model_name and len(prediction.model_sha256) == 64
    assert prediction.queued_at <= prediction.started_at <= prediction.finished_at
    assert prediction.attempts == 1


def test_it_has_no_warnings_inside_the_validated_population():
    assert run(PredictionFactory()).warnings == []


def test_it_warns_about_an_adult_lateral_study_but_still_answers():
    prediction = run(PredictionFactory(study__age_years=Decimal("45"), study__view="LAT"))
    assert prediction.status == Prediction.Status.SUCCEEDED and prediction.label
    age, view = prediction.warnings
    assert "Age 45 years is outside the ages the model was validated on (1–5 years)" in age
    assert "this study is lateral" in view


def png_study(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return StudyFactory(image=ContentFile(buffer.getvalue(), name="x.png"))


def test_it_rejects_a_colour_photo_without_a_label():
    prediction = run(PredictionFactory(study=png_study(Image.fromarray(skimage.data.chelsea()))))
    assert prediction.status == Prediction.Status.REJECTED and prediction.ood is True
    assert prediction.ood_reason == "The image is in colour; chest X-rays are grayscale."
    assert prediction.label == "" and prediction.probability is None and prediction.model_sha256


def test_it_rejects_a_grayscale_photo_on_the_learned_check():
    prediction = run(PredictionFactory(study=png_study(Image.fromarray(skimage.data.camera()))))
    assert prediction.status == Prediction.Status.REJECTED
    assert "unlike the chest X-rays the model was trained on" in prediction.ood_reason


def test_it_rejects_a_blank_image():
    prediction = run(PredictionFactory(study=png_study(Image.new("L", (300, 300), 0))))
    assert (prediction.status, prediction.ood_reason) == ("rejected", "The image is blank or almost uniform.")


def test_it_accepts_a_real_xray_and_stores_its_heatmaps():
    prediction = run(PredictionFactory(study__xray="pneumonia-2.jpeg"))
    assert prediction.status == Prediction.Status.SUCCEEDED and prediction.ood is False and prediction.label
    for field in (prediction.heatmap, prediction.heatmap_cnn, prediction.heatmap_vit):
        with field.open("rb") as fh:
            image = Image.open(fh)
            assert image.format == "PNG" and image.mode == "RGBA" and image.size == (224, 224)
    assert len({prediction.heatmap.name, prediction.heatmap_cnn.name, prediction.heatmap_vit.name}) == 3


def test_it_stores_no_heatmap_for_a_rejected_input():
    prediction = run(PredictionFactory(study=png_study(Image.new("L", (300, 300), 255))))
    assert prediction.status == Prediction.Status.REJECTED and not prediction.heatmap


def test_it_gives_different_images_different_probabilities():
    a = run(PredictionFactory(study__xray="normal-1.jpeg"))
    b = run(PredictionFactory(study__xray="pneumonia-2.jpeg"))
    assert a.probability != b.probability


def test_it_does_nothing_when_redelivered_after_success():
    prediction = run(PredictionFactory())
    before = Prediction.objects.filter(pk=prediction.pk).values().get()
    after = run(prediction)
    assert Prediction.objects.filter(pk=after.pk).values().get() == before


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_it_does_nothing_for_finished_predictions(status):
    prediction = run(PredictionFactory(status=status))
    assert prediction.status == status
    assert prediction.attempts == 0 and prediction.probability is None


def test_it_reruns_a_prediction_left_running_by_a_lost_worker():
    prediction = run(PredictionFactory(status=Prediction.Status.RUNNING, attempts=1))
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert prediction.attempts == 2


def test_it_gives_up_after_repeated_lost_workers():
    prediction = run(PredictionFactory(status=Prediction.Status.RUNNING, attempts=tasks.MAX_ATTEMPTS))
    assert prediction.status == Prediction.Status.FAILED
    assert "attempts" in prediction.error


def test_it_marks_a_failing_job_failed_with_a_message():
    prediction = PredictionFactory()
    prediction.study.image.delete(save=False)
    prediction = run(prediction)
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error and prediction.finished_at


def test_it_marks_a_corrupt_stored_image_failed():
    prediction = PredictionFactory()
    with open(prediction.study.image.path, "wb") as fh:
        fh.write(b"garbage")
    prediction = run(prediction)
    assert prediction.status == Prediction.Status.FAILED
    assert "JPEG, PNG or DICOM" in prediction.error


def test_it_marks_a_soft_time_limit_failed(monkeypatch):
    def slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks, "decode_with_tags", slow)
    prediction = run(PredictionFactory())
    assert prediction.status == Prediction.Status.FAILED
    assert "Timed out" in prediction.error


def test_it_marks_a_hard_time_limit_failed_through_on_failure():
    # The worker's main process calls on_failure when the hard limit kills a job.
    from billiard.exceptions import TimeLimitExceeded

    prediction = PredictionFactory(status=Prediction.Status.RUNNING)
    tasks.run_prediction.on_failure(TimeLimitExceeded(150), "task-id", (), {"prediction_pk": prediction.pk}, None)
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.FAILED
    assert "TimeLimitExceeded" in prediction.error


def test_it_lets_a_cancellation_during_the_run_win_and_keeps_no_heatmap(monkeypatch, settings):
    prediction = PredictionFactory()
    real_assess = tasks.get_predictor().assess

    def cancel_then_assess(*args, **kwargs):
        Prediction.objects.filter(pk=prediction.pk).update(status=Prediction.Status.CANCELLED)
        return real_assess(*args, **kwargs)

    monkeypatch.setattr(tasks.get_predictor(), "assess", cancel_then_assess)
    prediction = run(prediction)
    assert prediction.status == Prediction.Status.CANCELLED
    assert prediction.probability is None and not prediction.heatmap
    assert not [p for p in (Path(settings.MEDIA_ROOT) / "heatmaps").rglob("*") if p.is_file()]


def test_it_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        tasks.run_prediction.run(1)


def test_it_is_configured_for_redelivery_and_time_limits(settings):
    task = tasks.run_prediction
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.soft_time_limit == settings.PNEUMOWEB_TASK_SOFT_TIME_LIMIT
    assert task.time_limit == settings.PNEUMOWEB_TASK_HARD_TIME_LIMIT > task.soft_time_limit
