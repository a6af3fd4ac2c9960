"""Receive studies over DICOM and send results back: the listener plus the periodic jobs' scheduler."""

import signal
import threading

from django.core.management.base import BaseCommand

from core.periodic import scheduler
from pacs.listener import serve


class Command(BaseCommand):
    help = "Run the DICOM C-STORE listener (PNEUMOWEB_DICOM_*) and the thread that sends results back."

    def handle(self, *args, **options):
        server = serve(block=False)
        scheduler.start()  # pacs-round sends the results back (and the other periodic jobs run here too)
        stopping = threading.Event()
        for name in (signal.SIGTERM, signal.SIGINT):
            signal.signal(name, lambda *args: stopping.set())
        host, port = server.server_address[:2]
        self.stdout.write(f"DICOM listener up on {host}:{port}", ending="\n")
        self.stdout.flush()
        stopping.wait()
        server.shutdown()
        scheduler.stop()
