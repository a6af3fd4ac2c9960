"""The export log as an outbox (pacs/exports.py): what is queued, amended, retried and given up, in process.

The sender is replaced by a recording stand-in here; tests/integration/test_pacs_orthanc.py sends
to a real Orthanc.
"""

import pytest
from django.utils import timezone

from diagnosis.models import Prediction
from diagnosis.services import apply_review
from pacs import exports, send
from pacs.dicom_out import read_probability
from pacs.grouping import close_quiet_studies
from pacs.ingest import receive
from pacs.models import Destination, Export
from tests.base import integrity_failures, tamper_with
from tests.dicom_files import chest

pytestmark = pytest.mark.django_db
LATER = timezone.now() + timezone.timedelta(hours=1)


@pytest.fixture
def answered(django_capture_on_commit_callbacks):
    """A PACS instance whose prediction has finished, and one destination."""
    receive(chest(), received_from="C-STORE from ORTHANC")
    with django_capture_on_commit_callbacks(execute=True):
        close_quiet_studies(now=LATER)
    prediction = Prediction.objects.get()
    assert prediction.status == Prediction.Status.SUCCEEDED
    Destination.objects.create(name="pacs", kind="dicomweb", url="http://127.0.0.1:9/dicom-web")
    return prediction


@pytest.fixture
def sent(monkeypatch):
    """Record what would be sent; answer with the outcomes queued in ``sent.outcomes`` (default: sent)."""
    class Log(list):
        outcomes = []

    log = Log()

    def fake_send(dataset, destination):
        log.append(dataset)
        return log.outcomes.pop(0) if log.outcomes else send.Outcome(sent=True, retry=False, error="")

    monkeypatch.setattr(send, "send", fake_send)
    return log


def test_it_queues_an_sr_and_the_heatmap_capture_once_per_destination(answered):
    assert exports.queue_exports() == 2
    assert exports.queue_exports() == 0
    assert sorted(Export.objects.values_list("kind", flat=True)) == ["sc", "sr"]


def test_it_sends_an_sr_whose_probability_is_the_database_s(answered, sent):
    exports.queue_exports()
    assert exports.send_due() == {"sent": 2, "retrying": 0, "failed": 0}
    sr = next(dataset for dataset in sent if dataset.Modality == "SR")
    assert read_probability(sr) == pytest.approx(answered.probability, abs=1e-6)
    assert Export.objects.filter(status="sent", attempts=1).count() == 2


def test_it_sends_an_amended_sr_after_a_review(answered, sent, reviewer):
    exports.queue_exports()
    exports.send_due()
    apply_review(answered, verdict="disagree", label="NORMAL", comment="old scar", reviewer=reviewer)
    answered.save()
    assert exports.queue_exports() == 1
    exports.send_due()
    first, amended = Export.objects.filter(kind="sr").order_by("created_at")
    assert amended.revision and amended.series_instance_uid == first.series_instance_uid
    assert sent[-1].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0] \
        .ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.sop_instance_uid


def test_it_backs_off_on_what_may_pass_and_gives_up_after_the_attempts(answered, sent, settings):
    settings.PNEUMOWEB_DICOM_EXPORT_ATTEMPTS = 3
    exports.queue_exports()
    Export.objects.filter(kind="sc").delete()
    sent.outcomes = [send.Outcome(sent=False, retry=True, error="connection refused")] * 3
    now = timezone.now()
    assert exports.send_due(now=now) == {"sent": 0, "retrying": 1, "failed": 0}
    export = Export.objects.get()
    assert export.next_attempt_at >= now + timezone.timedelta(seconds=settings.PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS)
    assert exports.send_due(now=now) == {"sent": 0, "retrying": 0, "failed": 0}  # not due yet
    exports.send_due(now=now + timezone.timedelta(days=1))
    exports.send_due(now=now + timezone.timedelta(days=2))
    export.refresh_from_db()
    assert (export.status, export.attempts, export.last_error) == ("failed", 3, "connection refused")
    assert exports.send_due(now=now + timezone.timedelta(days=3)) == {"sent": 0, "retrying": 0, "failed": 0}


def test_it_gives_up_at_once_on_what_will_not_pass(answered, sent):
    exports.queue_exports()
    sent.outcomes = [send.Outcome(sent=False, retry=False, error="association rejected")] * 2
    assert exports.send_due() == {"sent": 0, "retrying": 0, "failed": 2}
    assert set(Export.objects.values_list("attempts", flat=True)) == {1}


def test_it_sends_nothing_twice_when_two_housekeepers_race(answered, sent):
    exports.queue_exports()
    export = Export.objects.first()
    assert exports.send_one(export.pk) == "sent"
    assert exports.send_one(export.pk) == "retrying"  # already claimed and sent: nothing more goes out
    assert len(sent) == 1


@pytest.mark.parametrize("changed", ["image", "heatmap"])
def test_it_fails_the_heatmap_capture_of_a_changed_file_at_once_and_sends_nothing(answered, sent, changed, caplog):
    exports.queue_exports()
    stored = answered.study.image if changed == "image" else answered.heatmap
    tamper_with(stored)
    assert exports.send_due() == {"sent": 1, "retrying": 0, "failed": 1}  # the SR reads no file
    assert [dataset.Modality for dataset in sent] == ["SR"]
    capture = Export.objects.get(kind="sc")
    owner = "study" if changed == "image" else "prediction"
    pk = answered.study_id if changed == "image" else answered.pk
    assert (capture.status, capture.attempts) == ("failed", 1)
    assert capture.last_error == f"not sent: the {changed} of {owner} {pk} failed its integrity check (not the file stored)"
    assert any(r.levelname == "ERROR" and stored.name in r.getMessage() for r in caplog.records)
    [entry] = integrity_failures()
    assert (entry.content_type.model, entry.object_pk) == (owner, str(pk))
    assert exports.send_due(now=timezone.now() + timezone.timedelta(days=1)) == {"sent": 0, "retrying": 0, "failed": 0}


def test_the_capture_shows_the_map_only_as_evidence_and_always_says_the_result(answered, sent):
    # The real model's answer on the fixture film, whatever it is; then the same prediction read both ways.
    exports.queue_exports()
    exports.send_due()
    capture = next(dataset for dataset in sent if dataset.Modality == "OT")
    assert f"AI: {answered.label}" in capture.ImageComments and "P(pneumonia)" in capture.ImageComments
    film = exports.overlay(answered)
    Prediction.objects.filter(pk=answered.pk).update(label="NORMAL", borderline=False)
    normal = Prediction.objects.get(pk=answered.pk)
    assert not normal.shows_heatmap
    assert exports.result_of(normal).heatmap_shown is False
    plain = exports.overlay(normal)  # the film alone: a NORMAL result's map is not evidence
    import numpy as np
    from PIL import Image

    from diagnosis.integrity import open_verified

    with open_verified(normal.study, "image") as fh:
        assert np.array_equal(plain, np.asarray(Image.open(fh).convert("RGB")))
    Prediction.objects.filter(pk=answered.pk).update(label="NORMAL", borderline=True)
    assert Prediction.objects.get(pk=answered.pk).shows_heatmap
    assert film.shape == plain.shape


def test_a_film_that_could_not_be_read_gets_an_sr_that_says_it_was_not_assessed(sent):
    from pacs.dicom_out import is_our_output

    from .test_compressed import FILMS, renamed
    from .test_listener import pydicom_fragments

    damaged = renamed(next(path for path in FILMS if path.stem == "jpeg-lossless-sv1"))
    damaged.PixelData = pydicom_fragments(damaged)
    instance = receive(damaged, received_from="C-STORE from ORTHANC").instance
    assert instance.outcome == "skipped" and instance.skip_reason.startswith("the image could not be read")
    Destination.objects.create(name="pacs", kind="dicomweb", url="http://127.0.0.1:9/dicom-web")
    assert exports.queue_exports() == 1
    assert exports.queue_exports() == 0  # once
    (export,) = Export.objects.all()
    assert export.prediction is None and export.kind == "sr" and "not assessed" in str(export)
    assert exports.send_due() == {"sent": 1, "retrying": 0, "failed": 0}
    (sr,) = sent
    assert is_our_output(sr) and sr.StudyInstanceUID == damaged.StudyInstanceUID
    texts = [item.TextValue for item in walk(sr.ContentSequence) if item.ValueType == "TEXT"]
    assert any(text.startswith("Not assessed: the image could not be read") for text in texts), texts
    assert any("did not assess this image" in text for text in texts)
    assert read_probability(sr) is None


def walk(items):
    for item in items or []:
        yield item
        yield from walk(item.get("ContentSequence", None))


def test_sent_at_is_the_sends_own_time_not_the_rounds(answered, sent):
    exports.queue_exports()
    round_started = timezone.now() - timezone.timedelta(minutes=5)  # a round that began a while ago
    Export.objects.update(next_attempt_at=round_started)
    assert exports.send_due(now=round_started)["sent"] == 2
    for sent_at in Export.objects.values_list("sent_at", flat=True):
        assert sent_at > round_started + timezone.timedelta(minutes=4)
