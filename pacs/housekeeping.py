"""The DICOM path's periodic work, in one round: close quiet studies, queue results, send what is due.

Runs on a thread of the listener process every ``PNEUMOWEB_PACS_TICK_SECONDS`` (and once per
``manage.py dicom_tick``). Every step is a conditional UPDATE or guarded by a unique constraint,
so several listeners may run it at once; a round that fails (the database is down) is logged and
the next one tries again — nothing is held in memory between rounds.
"""

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from core.connections import refresh_connection

from .exports import queue_exports, send_due
from .grouping import close_quiet_studies
from .models import Instance

log = logging.getLogger(__name__)


def tick():
    refresh_connection()
    done = {"submitted": close_quiet_studies(), "queued": queue_exports()}
    done.update(send_due())
    return done


def sweep_held_pixels(now=None, grace=None):
    """Delete held PNGs that no instance names (a process killed between the file and its row)."""
    now = now or time.time()
    grace = settings.PNEUMOWEB_ORPHAN_GRACE_SECONDS if grace is None else grace
    root = Path(settings.MEDIA_ROOT)
    named = set(Instance.objects.exclude(pixels="").values_list("pixels", flat=True))
    removed = []
    for path in (root / "pacs").rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name not in named and now - path.stat().st_mtime > grace:
            path.unlink(missing_ok=True)
            removed.append(name)
    if removed:
        log.warning("Deleted %d held DICOM images that no record names", len(removed))
    return removed


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
