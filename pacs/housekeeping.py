"""The DICOM path's periodic work, in one round: close quiet studies, queue results, send what is due.

Periodic jobs (``core/periodic.py``, registered in ``PacsConfig.ready``): ``pacs-round`` every
``PNEUMOWEB_PACS_TICK_SECONDS`` and ``sweep-held-pixels`` every ``PNEUMOWEB_PACS_SWEEP_SECONDS``, run by
the scheduler of the workers and of the listener (and once per ``manage.py dicom_tick``). Every
step is a conditional UPDATE or guarded by a unique constraint, so a round run twice is harmless;
a round that fails (the database is down) is logged and the next one tries again — nothing is
held in memory between rounds.
"""

from core.connections import refresh_connection
from core.stored_files import sweep_unnamed

from .exports import queue_exports, send_due
from .grouping import close_quiet_studies


def tick():
    """Close quiet studies, queue their results, send what is due."""
    refresh_connection()
    done = {"submitted": close_quiet_studies(), "queued": queue_exports()}
    done.update(send_due())
    return done


def sweep_held_pixels(now=None, grace=None):
    """Delete held PNGs that no instance names (a process killed between the file and its row)."""
    return sweep_unnamed(("pacs",), now=now, grace=grace)


def sweep_round():
    """Delete held PNGs no instance names, past PNEUMOWEB_ORPHAN_GRACE_SECONDS."""
    return {"deleted": len(sweep_held_pixels())}
