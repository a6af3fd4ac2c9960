"""One reconciliation round (or a loop): requeue jobs of lost workers, re-send lost messages, sweep orphan files.

Every worker runs this on a thread already (diagnosis/jobs/dispatch.py); the command is for operators
and for deployments that run workers without it (PNEUMOWEB_RECONCILE_SECONDS=0).
"""

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from diagnosis.jobs.dispatch import reconcile


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep reconciling every PNEUMOWEB_RECONCILE_SECONDS")
        parser.add_argument("--no-sweep", action="store_true", help="leave stored files alone")

    def handle(self, *args, loop=False, no_sweep=False, **options):
        while True:
            self.stdout.write(json.dumps(reconcile(sweep=not no_sweep)))
            if not loop:
                return
            time.sleep(max(settings.PNEUMOWEB_RECONCILE_SECONDS, 1))
