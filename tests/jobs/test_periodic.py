"""The periodic jobs: one registry filled by the apps, one scheduler, a claimed round per interval."""

import datetime
import json
import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from core import periodic
from core.models import PeriodicJob

from ..base import make_admin, signed_in_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def counted_job(settings, monkeypatch):
    """A registry holding one job that counts its rounds, every PNEUMOWEB_TEST_JOB_SECONDS."""
    calls = []
    settings.PNEUMOWEB_TEST_JOB_SECONDS = 30
    monkeypatch.setattr(periodic, "_registry", {})
    periodic.register("count", "PNEUMOWEB_TEST_JOB_SECONDS", lambda: calls.append(1) or {"rounds": len(calls)},
                      "Count its rounds.")
    return calls


def test_it_has_every_apps_jobs_each_with_an_interval_setting_in_seconds(settings):
    jobs = periodic.jobs()
    assert set(jobs) == {"requeue-and-resend", "sweep-orphan-files", "forget-idempotency-keys", "seal-audit",
                         "pacs-round", "sweep-held-pixels"}
    assert {name: job.interval_setting for name, job in jobs.items()} == {
        "requeue-and-resend": "PNEUMOWEB_RECONCILE_SECONDS", "sweep-orphan-files": "PNEUMOWEB_SWEEP_SECONDS",
        "forget-idempotency-keys": "PNEUMOWEB_SWEEP_SECONDS", "seal-audit": "PNEUMOWEB_AUDIT_SEAL_SECONDS",
        "pacs-round": "PNEUMOWEB_PACS_TICK_SECONDS", "sweep-held-pixels": "PNEUMOWEB_PACS_SWEEP_SECONDS"}
    settings.PNEUMOWEB_AUDIT_SEAL_SECONDS = 7  # read at every round, not at import
    assert jobs["seal-audit"].interval == 7.0
    assert all(job.description for job in jobs.values())
    # Each path names a function that exists (imported at the first round, not at start-up).
    from django.utils.module_loading import import_string

    assert all(callable(import_string(job.function)) for job in jobs.values())


def test_it_runs_a_due_job_once_per_interval_whatever_the_number_of_schedulers(counted_job):
    now = timezone.now()
    assert periodic.run_due(now=now) == {"count": "ok"}
    # A second scheduler (another worker, the listener) in the same interval: the round is taken.
    assert periodic.run_due(now=now + datetime.timedelta(seconds=29)) == {}
    assert counted_job == [1]
    assert periodic.run_due(now=now + datetime.timedelta(seconds=30)) == {"count": "ok"}
    assert len(counted_job) == 2
    row = PeriodicJob.objects.get(name="count")
    assert row.last_outcome == "ok" and json.loads(row.last_detail) == {"rounds": 2}
    assert row.next_due == now + datetime.timedelta(seconds=60)
    assert row.last_finished is not None and row.last_seconds >= 0 and ":" in row.last_host


def test_a_schedulers_pass_asks_the_database_nothing_about_a_job_not_due(counted_job, django_assert_num_queries):
    now, known = timezone.now(), {}
    assert periodic.run_due(now=now, next_due=known) == {"count": "ok"}
    assert known == {"count": now + datetime.timedelta(seconds=30)}
    with django_assert_num_queries(0):
        assert periodic.run_due(now=now + datetime.timedelta(seconds=29), next_due=known) == {}
    # Another scheduler ran the round first: this one reads when the next is due, and waits for it.
    PeriodicJob.objects.filter(name="count").update(next_due=now + datetime.timedelta(seconds=90))
    assert periodic.run_due(now=now + datetime.timedelta(seconds=30), next_due=known) == {}
    assert known == {"count": now + datetime.timedelta(seconds=90)} and counted_job == [1]


def test_a_failing_round_is_recorded_and_the_job_runs_again_next_interval(settings, monkeypatch):
    monkeypatch.setattr(periodic, "_registry", {})
    settings.PNEUMOWEB_TEST_JOB_SECONDS = 5

    def broken():
        raise OSError("disk full")

    periodic.register("broken", "PNEUMOWEB_TEST_JOB_SECONDS", broken, "Fail.")
    now = timezone.now()
    assert periodic.run_due(now=now) == {"broken": "failed"}
    row = PeriodicJob.objects.get(name="broken")
    assert row.last_outcome == "failed" and row.last_detail == "OSError: disk full"
    assert periodic.run_due(now=now + datetime.timedelta(seconds=5)) == {"broken": "failed"}


def test_an_interval_of_zero_turns_a_job_off(counted_job, settings):
    settings.PNEUMOWEB_TEST_JOB_SECONDS = 0
    assert periodic.run_due() == {} and counted_job == []
    assert not PeriodicJob.objects.exists()


def test_the_scheduler_wakes_at_the_shortest_interval_within_bounds(counted_job, settings):
    assert periodic.Scheduler().wake_seconds() == 5.0  # a 30 s job: looked at every 5 s
    settings.PNEUMOWEB_TEST_JOB_SECONDS = 1
    assert periodic.Scheduler().wake_seconds() == 1.0


def test_the_scheduler_thread_makes_passes_until_stopped(counted_job, settings, monkeypatch):
    # The passes themselves are run_due, tested above; here the thread: it wakes, passes, stops.
    passes = []
    monkeypatch.setattr(periodic, "run_due", lambda next_due: passes.append(1))
    settings.PNEUMOWEB_TEST_JOB_SECONDS = 0.2
    scheduler = periodic.Scheduler()
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while len(passes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert len(passes) >= 2 and scheduler._thread is None
    stopped_at = len(passes)
    time.sleep(0.5)
    assert len(passes) == stopped_at


def test_the_command_lists_every_job_with_its_last_run(counted_job, capsys):
    call_command("periodic")
    assert "count" in capsys.readouterr().out and "never run" in _json_lines(capsys)[0]["outcome"]
    call_command("periodic", "--run", "count")
    assert capsys.readouterr().out.startswith("count: ok")
    [line] = _json_lines(capsys)
    assert line["job"] == "count" and line["outcome"] == "ok" and line["every_seconds"] == 30
    assert json.loads(line["detail"]) == {"rounds": 1}


def _json_lines(capsys):
    call_command("periodic", "--json")
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_command_refuses_an_unknown_job_naming_the_known_ones(counted_job):
    with pytest.raises(CommandError, match="No periodic job named 'nope'; the jobs are: count"):
        call_command("periodic", "--run", "nope")


def test_the_admin_shows_the_jobs_read_only(counted_job):
    periodic.run_due()
    PeriodicJob.objects.filter(name="count").update(last_outcome="failed", last_detail="OSError: " + "disk full " * 200)
    client = signed_in_client(make_admin())
    page = client.get(reverse("admin:core_periodicjob_changelist"))
    assert page.status_code == 200 and b"count" in page.content
    assert b"disk full " * 9 in page.content and b"disk full " * 12 not in page.content  # cut short in the list
    assert (b"disk full " * 200).strip() in client.get(reverse("admin:core_periodicjob_change", args=["count"])).content
    assert client.get(reverse("admin:core_periodicjob_change", args=["count"])).status_code == 200
    assert client.post(reverse("admin:core_periodicjob_change", args=["count"]), {"last_outcome": "ok"}
                       ).status_code == 403
    assert client.get(reverse("admin:core_periodicjob_add")).status_code == 403
