"""Sending jobs and finding lost ones (diagnosis/jobs/dispatch.py): outbox, lease expiry, re-sends, orphan files."""

import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from diagnosis.jobs import dispatch
from diagnosis.jobs.lease import MAX_ATTEMPTS
from diagnosis.jobs.tasks import run_prediction
from diagnosis.models import Prediction

from ..factories import PredictionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """Record what would be published instead of running it; ``broken`` makes the broker refuse."""
    messages = []

    class Broker:
        broken = False

    def apply_async(kwargs, retry=True):
        if Broker.broken:
            raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        messages.append(kwargs["prediction_pk"])

    monkeypatch.setattr(run_prediction, "apply_async", apply_async)
    Broker.messages = messages
    return Broker


def ago(seconds):
    return timezone.now() - timezone.timedelta(seconds=seconds)


def test_it_records_when_a_job_was_handed_to_the_broker(sent):
    prediction = PredictionFactory()
    assert dispatch.dispatch(prediction.pk) is True
    prediction.refresh_from_db()
    assert sent.messages == [prediction.pk] and prediction.dispatched_at is not None


def test_it_leaves_the_job_queued_and_unsent_when_the_broker_is_down(sent):
    sent.broken = True
    prediction = PredictionFactory()
    assert dispatch.dispatch(prediction.pk) is False
    prediction.refresh_from_db()
    assert prediction.status == "queued" and prediction.dispatched_at is None


def test_it_sends_what_never_went_out_and_what_went_out_long_ago(sent, settings):
    never = PredictionFactory()
    lost = PredictionFactory(dispatched_at=ago(settings.PNEUMOWEB_RESEND_AFTER_SECONDS + 5))
    fresh = PredictionFactory(dispatched_at=ago(1))
    finished = PredictionFactory(succeeded=True, dispatched_at=None)
    assert dispatch.resend_lost() == 2
    assert sorted(sent.messages) == sorted([never.pk, lost.pk])
    assert fresh.pk not in sent.messages and finished.pk not in sent.messages


def test_it_stops_sending_while_the_broker_is_down_and_sends_once_it_is_back(sent):
    waiting = [PredictionFactory() for _ in range(3)]
    sent.broken = True
    assert dispatch.resend_lost() == 0
    sent.broken = False
    assert dispatch.resend_lost() == 3
    assert sorted(sent.messages) == sorted(p.pk for p in waiting)


def test_it_requeues_a_job_whose_worker_stopped_renewing_its_lease(sent, settings):
    stale = ago(settings.PNEUMOWEB_LEASE_SECONDS + 1)
    lost = PredictionFactory(status="running", attempts=1, lease_token="dead", heartbeat_at=stale,
                             dispatched_at=stale)
    alive = PredictionFactory(status="running", attempts=1, lease_token="alive", heartbeat_at=ago(2))
    hopeless = PredictionFactory(status="running", attempts=MAX_ATTEMPTS, lease_token="dead", heartbeat_at=stale)
    done = dispatch.reconcile(sweep=False)
    assert done == {"requeued": 1, "failed": 1, "resent": 1}
    for p in (lost, alive, hopeless):
        p.refresh_from_db()
    assert (lost.status, lost.lease_token, lost.attempts) == ("queued", "", 1)
    assert sent.messages == [lost.pk]
    assert alive.status == "running" and alive.lease_token == "alive"
    assert hopeless.status == "failed" and "attempts" in hopeless.error


def test_a_requeued_job_runs_to_the_end(settings):
    stale = ago(settings.PNEUMOWEB_LEASE_SECONDS + 1)
    prediction = PredictionFactory(status="running", attempts=1, lease_token="dead", heartbeat_at=stale)
    dispatch.reconcile(sweep=False)  # eager jobs in tests: the re-sent job runs at once
    prediction.refresh_from_db()
    assert prediction.status == "succeeded" and prediction.attempts == 2


def old_file(path, age):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_it_deletes_old_files_no_row_names_and_nothing_else(settings):
    grace = settings.PNEUMOWEB_ORPHAN_GRACE_SECONDS
    kept = PredictionFactory()
    root = Path(settings.MEDIA_ROOT)
    named = root / kept.study.image.name
    os.utime(named, (time.time() - 2 * grace, time.time() - 2 * grace))
    orphan = old_file(root / "heatmaps" / "2026" / "01" / "lost.png", 2 * grace)
    young = old_file(root / "studies" / "2026" / "01" / "uploading.jpg", 10)
    assert dispatch.sweep_orphans() == ["heatmaps/2026/01/lost.png"]
    assert named.exists() and young.exists() and not orphan.exists()


def test_the_command_runs_one_round(sent, capsys):
    PredictionFactory()
    call_command("reconcile", "--no-sweep")
    assert '"resent": 1' in capsys.readouterr().out


def test_an_upload_is_accepted_while_the_broker_is_down(sent, api, xray_upload,
                                                        django_capture_on_commit_callbacks):
    sent.broken = True
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post("/api/predict/", {"image": xray_upload(), "age": "4", "patient_mrn": "M-1",
                                              "patient_name": "Ada"}, format="multipart")
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1  # the send was tried after the commit, and failed
    prediction = Prediction.objects.get(pk=response.json()["id"])
    assert prediction.status == "queued" and prediction.dispatched_at is None
    sent.broken = False
    assert dispatch.resend_lost() == 1 and sent.messages == [prediction.pk]
