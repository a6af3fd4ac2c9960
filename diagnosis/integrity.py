"""Stored files that prove they are the ones stored: a sha256 on the row, checked whenever the file is read.

The convention: a model's ``FileField`` named ``x`` is checked when the model also has a field
``x_sha256`` — ``Study.image``, the three heatmaps of ``Prediction``, ``Report.pdf`` and
``pacs.Instance.pixels``. Whoever writes such a file records its digest in the same write as its
name (a file never appears on a row without it). Every reader that serves, exports or predicts on
a file opens it through :func:`open_verified`, which hashes what is on disk and compares it with
the row before a byte is used, and hands back the same open file, rewound. ``manage.py
verify_files`` (:class:`StoredFilesCheck`) walks the same fields — found by the convention
(:func:`models_with_checked_files`), so this module needs no import of ``pacs``, which sits above
it — and every file under the media folder, to find those that no row names.

A changed file is never used as if fine: it raises :class:`StoredFileChanged` once it has been
logged at ERROR (row, path, expected and actual digest) and written to the audit trail. The web
answers it with 409 (``diagnosis.media.AnswerChangedFiles``), the worker fails the prediction,
a PACS export fails for good. A missing file raises ``FileNotFoundError`` as before (404).

A row with a file but no digest — written before digests were kept, and missing when the data
migration filled them in — is served with a WARNING: the row cannot say what the file should be.
``verify_files`` reports it as unrecorded, and ``verify_files --record`` records it once an
operator has judged the file good.
"""

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.apps import apps
from django.db import models

from audit.trail import record_integrity_failure

log = logging.getLogger(__name__)

DIGEST_SUFFIX = "_sha256"


class StoredFileChanged(Exception):
    """A stored file's bytes no longer hash to the sha256 recorded when it was written.

    ``str()`` is the message for people (no digests, no paths); the attributes are for logs.
    """

    MESSAGE = ("This file failed its integrity check: it is not the file that was stored. "
               "An administrator has been told.")

    def __init__(self, instance, field_name, name, expected, actual):
        super().__init__(self.MESSAGE)
        self.instance, self.field_name, self.name = instance, field_name, name
        self.expected, self.actual = expected, actual


def digest_field(field_name):
    return f"{field_name}{DIGEST_SUFFIX}"


def sha256_hex(data):
    """The digest recorded for ``data`` (bytes), as its writer stores it."""
    return hashlib.sha256(data).hexdigest()


def sha256_of(fh):
    """The digest of an open binary file, read from where it stands to its end."""
    return hashlib.file_digest(fh, "sha256").hexdigest()


def checked_fields(model):
    """Names of ``model``'s file fields that carry a digest (see the module docstring)."""
    names = {field.name for field in model._meta.concrete_fields}
    return [field.name for field in model._meta.concrete_fields
            if isinstance(field, models.FileField) and digest_field(field.name) in names]


def models_with_checked_files():
    """[(model, [file field names])] of every installed model that keeps checked files."""
    return [(model, fields) for model in apps.get_models() if (fields := checked_fields(model))]


def open_verified(instance, field_name):
    """``instance.<field_name>`` open for reading at its first byte, once it hashed to the recorded digest.

    Raises ``FileNotFoundError`` when the file is gone and :class:`StoredFileChanged` (logged and
    audited first) when it is not the file that was stored. The caller closes the returned file.
    The bytes served are read from the same open file that was hashed: a file swapped on disk
    (renamed over) after the check is not what is sent.
    """
    stored = getattr(instance, field_name)
    expected = getattr(instance, digest_field(field_name))
    stored.open("rb")
    if not expected:
        log.warning("%s %s has no recorded sha256 for %s (%s): served unchecked; run manage.py verify_files",
                    instance._meta.label, instance.pk, field_name, stored.name)
        return stored
    try:
        actual = sha256_of(stored)
        stored.seek(0)
    except BaseException:
        stored.close()
        raise
    if actual != expected:
        stored.close()
        changed = StoredFileChanged(instance, field_name, stored.name, expected, actual)
        log_and_audit(changed)
        raise changed
    return stored


def log_and_audit(changed):
    """Log a changed file at ERROR and put it on the audit trail (actor and address come from the request, if any)."""
    instance = changed.instance
    log.error("Stored file changed: %s %s %s %s: expected sha256 %s, found %s", instance._meta.label,
              instance.pk, changed.field_name, changed.name, changed.expected, changed.actual)
    what = str(instance._meta.get_field(changed.field_name).verbose_name)
    record_integrity_failure(instance, what=what, field=changed.field_name, file=changed.name,
                             expected=changed.expected, actual=changed.actual)


# --- manage.py verify_files ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One line of ``verify_files``: a file that is missing, changed, unrecorded (no digest) or orphaned."""

    kind: str
    path: str
    model: str = ""
    pk: object = None
    field: str = ""
    expected: str = ""
    actual: str = ""

    def __str__(self):
        if self.kind == "orphaned":
            return f"orphaned {self.path}"
        line = f"{self.kind} {self.model} {self.pk} {self.field} {self.path}"
        if self.kind == "changed":
            line += f" expected={self.expected} actual={self.actual}"
        elif self.kind == "unrecorded":
            line += f" actual={self.actual}"
        return line


class StoredFilesCheck:
    """Every checked file that rows name, hashed and compared; then every file under ``root`` that no row names.

    ``problems()`` yields :class:`Problem` as it goes (rows are streamed with ``iterator()``; only
    the set of names the rows hold is kept, to find orphans); ``named`` counts the files rows name.
    A file younger than ``grace`` seconds that no row names is not reported: it may be one whose
    row is being written right now (every writer stores the file first).
    """

    def __init__(self, root, *, grace, now=None):
        self.root, self.grace, self.now = Path(root), grace, now
        self.named = 0

    def problems(self):
        names = set()
        for model, fields in models_with_checked_files():
            yield from self._rows(model, fields, names)
        yield from self._orphans(names)

    def _rows(self, model, fields, names):
        columns = [name for field in fields for name in (field, digest_field(field))]
        rows = model._base_manager.order_by("pk").values_list("pk", *columns)
        for pk, *values in rows.iterator(chunk_size=1000):
            digests = {}  # two fields may name one file (the combined heatmap is the CNN map)
            for field, name, expected in zip(fields, values[::2], values[1::2], strict=True):
                if not name:
                    continue
                names.add(name)
                self.named += 1
                if name not in digests:
                    digests[name] = self._digest(model._meta.get_field(field).storage, name)
                problem = self._compare(model, pk, field, name, expected, digests[name])
                if problem:
                    yield problem

    @staticmethod
    def _digest(storage, name):
        try:
            with storage.open(name, "rb") as fh:
                return sha256_of(fh)
        except FileNotFoundError:
            return None

    @staticmethod
    def _compare(model, pk, field, name, expected, actual):
        where = {"model": model._meta.label_lower, "pk": pk, "field": field, "path": name}
        if actual is None:
            # The row may have let go of it meanwhile (a held PACS image is dropped once submitted).
            if model._base_manager.filter(pk=pk, **{field: name}).exists():
                return Problem("missing", expected=expected, **where)
            return None
        if not expected:
            return Problem("unrecorded", actual=actual, **where)
        if actual != expected:
            return Problem("changed", expected=expected, actual=actual, **where)
        return None

    def _orphans(self, names):
        now = time.time() if self.now is None else self.now
        for folder, subfolders, files in os.walk(self.root):
            subfolders.sort()
            for file in sorted(files):
                path = Path(folder, file)
                name = path.relative_to(self.root).as_posix()
                if name in names:
                    continue
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:  # swept meanwhile (diagnosis.jobs.dispatch, pacs.housekeeping)
                    continue
                if age >= self.grace:
                    yield Problem("orphaned", name)


def record_digest(problem):
    """Record, on its row, the digest of a file a ``Problem("unrecorded")`` found, as the file is now.

    Queryset ``update()``: a finished prediction refuses changes through ``save()``.
    """
    model = apps.get_model(problem.model)
    digest = digest_field(problem.field)
    return model._base_manager.filter(pk=problem.pk, **{problem.field: problem.path, digest: ""}).update(
        **{digest: problem.actual})
