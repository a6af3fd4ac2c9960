"""Every periodic job in one registry, run by one scheduler loop.

Each app's ``ready()`` registers its jobs: ``register(name, interval_setting, function, description)``
— the interval is a setting in seconds, read at every round (``override_settings`` and tests see it);
the function is a dotted path, imported at its first round, so that registering costs no process
its start-up time (``pacs.housekeeping`` pulls in highdicom: 0.37 s in every web process otherwise,
by ``python -X importtime -c "import django; django.setup()"``).
One ``Scheduler`` thread runs them: in every worker's main process (``diagnosis/jobs/worker.py``)
and in the DICOM listener (``pacs``), or alone with ``manage.py periodic --loop``.

Why our own loop and not Celery beat: beat is a second process every deployment must run exactly
once, and its schedule lives beside the broker; the embedded default (a file-system transport) and
a site that runs two workers would both get it wrong. Here any number of schedulers may run:

- each job has a row (``core.PeriodicJob``); a scheduler **claims a round** with one conditional
  UPDATE (``next_due <= now`` → ``next_due = now + interval``), so when two processes run the
  scheduler, each round of each job runs in one of them, and a process that dies mid-round only
  delays the job to its next interval;
- every job is idempotent all the same (conditional UPDATEs, unique constraints): a job run twice
  by hand beside the scheduler does no harm;
- the row keeps the last run: when it started and ended, where, its outcome and what it did —
  shown by ``manage.py periodic`` and on the admin's "Periodic jobs" page.

A round that fails (the database is down) is logged, recorded when the database lets us, and tried
again at the next interval; nothing is held in memory between rounds.
"""

import dataclasses
import json
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .connections import refresh_connection

log = logging.getLogger(__name__)

# How often an idle scheduler looks at its jobs: the shortest interval, within these bounds.
_MIN_WAKE, _MAX_WAKE = 0.2, 5.0


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    interval_setting: str
    function: object  # () -> a JSON-able summary of what the round did; or its dotted path
    description: str

    @property
    def interval(self):
        return float(getattr(settings, self.interval_setting))

    def __call__(self):
        function = import_string(self.function) if isinstance(self.function, str) else self.function
        return function()


_registry = {}


def register(name, interval_setting, function, description):
    """Add a job (idempotent: ``ready()`` may run more than once). Interval ≤ 0 turns the job off."""
    _registry[name] = Job(name, interval_setting, function, description)


def jobs():
    """The registered jobs, by name."""
    return dict(sorted(_registry.items()))


def _claim(job, now):
    """Take this round of ``job`` if it is due. Returns (claimed, when the next round is due)."""
    from .models import PeriodicJob

    next_due = now + timezone.timedelta(seconds=job.interval)
    claimed = PeriodicJob.objects.filter(name=job.name, next_due__lte=now).update(
        next_due=next_due, last_started=now, last_host=process_name())
    if claimed:
        return True, next_due
    taken = PeriodicJob.objects.filter(name=job.name).values_list("next_due", flat=True).first()
    if taken is not None:
        return False, taken  # not due yet, or another scheduler has this round
    try:  # the job's first round anywhere
        with transaction.atomic():
            PeriodicJob.objects.create(name=job.name, next_due=next_due, last_started=now, last_host=process_name())
    except IntegrityError:  # another scheduler created it a moment ago: its round
        return False, next_due
    return True, next_due


def process_name():
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def run_job(job):
    """Run one round now (claimed or not) and record its outcome; returns (outcome, detail)."""
    from .models import PeriodicJob

    started = time.monotonic()
    try:
        detail = job()
        outcome = PeriodicJob.Outcome.OK
    except Exception as error:  # noqa: BLE001 - recorded, logged, tried again next interval
        log.warning("Periodic job %s failed; it runs again in %s s", job.name, job.interval, exc_info=True)
        detail, outcome = f"{type(error).__name__}: {error}", PeriodicJob.Outcome.FAILED
        refresh_connection()
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    try:
        PeriodicJob.objects.filter(name=job.name).update(
            last_finished=timezone.now(), last_outcome=outcome, last_detail=text[:2000],
            last_seconds=round(time.monotonic() - started, 3))
    except DatabaseError:
        log.warning("Could not record the outcome of periodic job %s", job.name, exc_info=True)
    return outcome, detail


def run_due(now=None, next_due=None):
    """One pass: every enabled job whose round is due and not taken elsewhere runs. Returns {name: outcome}.

    ``next_due``: a scheduler's own note of when each job is next due ({name: datetime}, updated
    here), so that a pass asks the database nothing about a job that is not due yet."""
    done = {}
    next_due = {} if next_due is None else next_due
    for job in jobs().values():
        moment = now or timezone.now()
        if job.interval <= 0 or next_due.get(job.name, moment) > moment:
            continue
        try:
            refresh_connection()
            claimed, next_due[job.name] = _claim(job, moment)
        except DatabaseError:
            log.warning("Periodic job %s: the database is not answering; trying again", job.name, exc_info=True)
            continue
        if claimed:
            outcome, detail = run_job(job)
            done[job.name] = outcome
            if outcome != "ok" or _did_something(detail):
                log.info("Periodic job %s: %s %s", job.name, outcome, detail)
    return done


def _did_something(detail):
    if isinstance(detail, dict):
        return any(detail.values())
    return bool(detail)


class Scheduler:
    """``run_due()`` on a daemon thread, waking at the shortest job interval (0.2–5 s)."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = None
        self._next_due = {}  # when each job is next due, as last read: passes in between cost no query

    def start(self):
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="periodic-jobs", daemon=True)
        self._thread.start()
        log.info("Periodic jobs scheduled here: %s",
                 ", ".join(f"{j.name} every {j.interval:g} s" for j in jobs().values() if j.interval > 0) or "none")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if not self._thread.is_alive():  # one still in a long round keeps its place: no second thread
                self._thread = None

    def wake_seconds(self):
        intervals = [j.interval for j in jobs().values() if j.interval > 0]
        return min(_MAX_WAKE, max(_MIN_WAKE, min(intervals, default=_MAX_WAKE)))

    def _run(self):
        while not self._stop.wait(self.wake_seconds()):
            try:
                run_due(next_due=self._next_due)
            except Exception:  # noqa: BLE001 - never let the thread die: the next pass tries again
                log.warning("Periodic pass failed; trying again", exc_info=True)
            finally:
                connection.close()


scheduler = Scheduler()
