"""The periodic jobs (core/periodic.py): each one's interval and last run; run one now, or run the scheduler.

    manage.py periodic                 # a table: job, every, next due, last run, outcome, what it did
    manage.py periodic --json          # the same, one JSON object per job
    manage.py periodic --run seal-audit  # one round of that job now, recorded like the scheduler's
    manage.py periodic --loop          # the scheduler in the foreground (a site with no worker or listener)
"""

import json
import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import periodic
from core.models import PeriodicJob


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--run", metavar="NAME", help="run one round of this job now")
        what.add_argument("--loop", action="store_true", help="run the scheduler until stopped (SIGTERM/SIGINT)")
        parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")

    def handle(self, *args, run=None, loop=False, json=False, **options):
        if run:
            return self._run_one(run)
        if loop:
            return self._loop()
        self._show(as_json=json)

    def _run_one(self, name):
        job = periodic.jobs().get(name)
        if job is None:
            raise CommandError(f"No periodic job named {name!r}; the jobs are: {', '.join(periodic.jobs())}")
        PeriodicJob.objects.get_or_create(name=name, defaults={"next_due": timezone.now()})
        PeriodicJob.objects.filter(name=name).update(last_started=timezone.now(), last_host=periodic.process_name())
        outcome, detail = periodic.run_job(job)
        self.stdout.write(f"{name}: {outcome} {detail}")
        if outcome != PeriodicJob.Outcome.OK:
            raise CommandError(f"{name} failed: {detail}")

    def _loop(self):
        stopping = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *args: stopping.set())
        periodic.scheduler.start()
        self.stdout.write("Periodic jobs running; stop with SIGTERM or Ctrl-C")
        self.stdout.flush()
        stopping.wait()
        periodic.scheduler.stop()

    def _show(self, *, as_json):
        rows = {row.name: row for row in PeriodicJob.objects.all()}
        lines = []
        for name, job in periodic.jobs().items():
            row = rows.get(name)
            lines.append({
                "job": name,
                "every_seconds": job.interval if job.interval > 0 else None,
                "setting": job.interval_setting,
                "next_due": row.next_due.isoformat() if row else None,
                "last_started": row.last_started.isoformat() if row and row.last_started else None,
                "last_seconds": row.last_seconds if row else None,
                "outcome": (row.last_outcome or "running") if row else "never run",
                "detail": row.last_detail if row else "",
                "where": row.last_host if row else "",
                "what": job.description,
            })
        if as_json:
            for line in lines:
                self.stdout.write(json.dumps(line))
            return
        for line in lines:
            every = f"every {line['every_seconds']:g} s" if line["every_seconds"] else f"off ({line['setting']}=0)"
            last = line["last_started"] or "-"
            self.stdout.write(f"{line['job']:<24} {every:<16} last {last:<32} {line['outcome']:<9} "
                              f"{line['detail'][:80]}  {line['where']}")
