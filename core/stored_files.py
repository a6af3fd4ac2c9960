"""Which stored files rows name, and deleting the ones under the media folder that no row names.

Generic over the app registry: every ``FileField`` of every installed model counts, so the backup
(``core/backup.py``), the reconciler's sweep (``diagnosis/jobs/dispatch.py``) and the PACS
listener's sweep (``pacs/housekeeping.py``) read one list, and a new model with a file needs no
change here.
"""

import logging
import time
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db import models

log = logging.getLogger(__name__)


def named_files(using="default"):
    """Every stored file name a row names, with the (table, pk, field) naming it."""
    names = {}
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, models.FileField):
                rows = model._base_manager.using(using).exclude(**{field.attname: ""}).values_list("pk", field.attname)
                for pk, name in rows.iterator(chunk_size=2000):
                    names.setdefault(name, (model._meta.db_table, pk, field.name))
    return names


def sweep_unnamed(folders, *, now=None, grace=None):
    """Delete files under these media folders that no row names and that are older than the grace
    (``PNEUMOWEB_ORPHAN_GRACE_SECONDS``): a process killed between writing a file and its row. Returns their names."""
    now = now or time.time()
    grace = settings.PNEUMOWEB_ORPHAN_GRACE_SECONDS if grace is None else grace
    root = Path(settings.MEDIA_ROOT)
    named = named_files()
    removed = []
    for folder in folders:
        for path in (root / folder).rglob("*"):
            name = path.relative_to(root).as_posix()
            if path.is_file() and name not in named and now - path.stat().st_mtime > grace:
                path.unlink(missing_ok=True)
                removed.append(name)
    if removed:
        log.warning("Deleted %d stored files that no record names: %s", len(removed), removed[:20])
    return removed
