"""The DICOM path's periodic work, in one round: close quiet studies, queue results, send what is due.

Runs on a thread of the listener process every ``PNEUMOWEB_PACS_TICK_SECONDS`` (and once per
``manage.py dicom_tick``). Every step is a conditional UPDATE or guarded by a unique constraint,
so several listeners may run it at once; a round that fails (the database is down) is logged and
the next one tries again — nothing is held in memory between rounds.
"""

import logging
import threading

from django.conf import settings
from django.db import connection

from core.connections import refresh_connection
from core.stored_files import sweep_unnamed

from .exports import queue_exports, send_due
from .grouping import close_quiet_studies

log = logging.getLogger(__name__)


def tick():
    refresh_connection()
    done = {"submitted": close_quiet_studies(), "queued": queue_exports()}
    done.update(send_due())
    return done


def sweep_held_pixels(now=None, grace=None):
    """Delete held PNGs that no instance names (a process killed between the file and its row)."""
    return sweep_unnamed(("pacs",), now=now, grace=grace)


class Housekeeper:
    def __init__(self):
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="pacs-housekeeping", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self):
        rounds = 0
        while not self._stop.wait(settings.PNEUMOWEB_PACS_TICK_SECONDS):
            try:
                done = tick()
                if rounds % 300 == 0:
                    sweep_held_pixels()
                if any(done.values()):
                    log.info("DICOM housekeeping: %s", done)
            except Exception:  # noqa: BLE001 - a database outage: try again next round
                log.warning("DICOM housekeeping round failed; retrying", exc_info=True)
            finally:
                connection.close()
            rounds += 1
