"""Sealing the audit trail: a hash chain over closed windows of entries, anchored in a file outside the database.

Contract
- Writers are untouched: an audit entry is the same single INSERT as before, with no lock and no
  read of any other row, so concurrent requests, workers and listeners neither wait for each other
  nor fail because of the trail (``bench/bench_audit.py`` measures writers with and without a
  sealer running beside them).
- ``seal_due()`` (the periodic job ``seal-audit``, every ``PNEUMOWEB_AUDIT_SEAL_SECONDS``, or
  ``manage.py seal_audit`` from cron) seals every entry older than ``PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS`` and not yet sealed.
  A seal covers an id range ``(previous seal's last id, last_id]`` and lists every entry in it
  with the sha256 of the entry's canonical JSON; its digest is the sha256 of its own fields and
  the previous seal's digest, so the seals form one chain. Seals are numbered 1, 2, …; the
  number is unique, so of two sealers racing the second one's INSERT fails and it stops.
- Each seal is appended, as one JSON line, to ``PNEUMOWEB_AUDIT_SEAL_FILE`` (``export_seals()``,
  after the seal committed; a seal not yet exported is exported on the next round). That file is
  meant for an external append-only store; it is the anchor that shows a tail of seals and
  entries deleted from the database.
- ``verify()`` names the first entry changed, removed, inserted or missing from the end, and
  any seal whose chain does not hold; ``manage.py verify_audit`` prints it.

Why windows and not a chain through every entry: chaining each entry to its predecessor needs the
predecessor's hash at INSERT time, which serialises every writer on one row (or fails them under
a serialisable isolation level). Windows leave writers alone and cost one reader a minute.

The grace period is there because ids are handed out when a row is inserted, not when its
transaction commits: an entry inserted by a transaction that commits later than the grace after
its own timestamp would appear inside an already sealed range and be reported as inserted. No
request or task here holds a transaction that long (gunicorn's and Celery's time limits are far
shorter than the default 300 s). What the seals cannot show: entries deleted or changed before
they were sealed (at most the grace period plus a minute of them), and a chain rewritten in the
database together with the exported file.
"""

import datetime
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from auditlog.models import LogEntry
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.canonical import canonical_json, plain

from .models import AuditSeal, Installation

log = logging.getLogger(__name__)

# The LogEntry columns an entry's hash covers, in this order. A new django-auditlog column is not
# covered until it is added here (with a new SEAL_FORMAT, so older seals keep verifying).
ENTRY_FIELDS = (
    "id", "content_type_id", "object_pk", "object_id", "object_repr", "serialized_data", "action",
    "changes_text", "changes", "actor_id", "cid", "remote_addr", "remote_port", "timestamp",
    "additional_data", "actor_email",
)
SEAL_FORMAT = 1
MAX_ENTRIES_PER_SEAL = 5000
GENESIS = "0" * 64


def entry_hash(row):
    """sha256 of one entry's covered columns (a ``values()`` row)."""
    return hashlib.sha256(canonical_json([row[name] for name in ENTRY_FIELDS]).encode()).hexdigest()


def seal_digest(*, number, previous_digest, first_id, last_id, entries, sealed_at, format=SEAL_FORMAT):
    """The chain link: sha256 over the seal's fields, its entries' hashes and the previous digest."""
    body = {"format": format, "number": number, "previous_digest": previous_digest, "first_id": first_id,
            "last_id": last_id, "entries": entries, "sealed_at": plain(sealed_at)}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _entry_rows(first_id, last_id):
    """Entries with ``first_id < id <= last_id`` as value rows, in id order, streamed."""
    return (LogEntry.objects.filter(pk__gt=first_id, pk__lte=last_id).order_by("pk")
            .values(*ENTRY_FIELDS).iterator(chunk_size=1000))


def seal_due(*, now=None):
    """Seal every entry older than the grace period that no seal covers yet. Returns the new seals."""
    made = []
    while (seal := _seal_one(now=now)) is not None:
        made.append(seal)
    if made:
        export_seals()
    return made


def seal_round():
    """Seal the audit entries older than PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS (periodic job ``seal-audit``)."""
    made = seal_due()
    return {"seals": len(made), "entries": sum(seal.count for seal in made)}


def _seal_one(*, now=None):
    cutoff = (now or timezone.now()) - datetime.timedelta(seconds=settings.PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS)
    last = AuditSeal.objects.order_by("-number").first()
    after = last.last_id if last else 0
    window = list(LogEntry.objects.filter(pk__gt=after, timestamp__lte=cutoff).order_by("pk")
                  .values_list("pk", flat=True)[:MAX_ENTRIES_PER_SEAL])
    if not window:
        return None
    # Everything up to the newest old-enough entry, including newer entries with lower ids
    # (timestamps come from several clocks): they are committed, so they belong in this range.
    last_id = window[-1]
    entries = [[row["id"], entry_hash(row)] for row in _entry_rows(after, last_id)]
    number = (last.number if last else 0) + 1
    previous = last.digest if last else GENESIS
    sealed_at = timezone.now()
    seal = AuditSeal(
        number=number, format=SEAL_FORMAT, first_id=after, last_id=last_id, count=len(entries),
        entries=entries, previous_digest=previous, sealed_at=sealed_at,
        digest=seal_digest(number=number, previous_digest=previous, first_id=after, last_id=last_id,
                           entries=entries, sealed_at=sealed_at),
    )
    try:
        with transaction.atomic():
            seal.save(force_insert=True)
    except IntegrityError:
        log.info("Audit seal %d was made by another sealer", number)
        return None
    return seal


def installation():
    """This installation's name (a uuid, as text): every line of its sealed-digest file carries it."""
    row = Installation.objects.order_by("pk").first()
    if row is None:  # a database from before the row existed, or emptied by hand
        import uuid

        row, _ = Installation.objects.get_or_create(pk=1, defaults={"uuid": uuid.uuid4()})
    return str(row.uuid)


def anchor_line(seal, installation_name=None):
    """What the external file keeps of a seal: enough to check the chain and spot a missing tail,
    and which installation's trail it anchors."""
    return {"format": seal.format, "number": seal.number, "first_id": seal.first_id, "last_id": seal.last_id,
            "count": seal.count, "previous_digest": seal.previous_digest, "digest": seal.digest,
            "sealed_at": plain(seal.sealed_at), "installation": installation_name or installation()}


def foreign_file(anchor):
    """The other installations a sealed-digest file names when **none** of its lines names this one:
    another site's file, not this trail's anchor ([] otherwise). A file of this installation with a
    line naming another is not foreign: that line is a problem ``verify`` reports."""
    ours = installation()
    named = {line.get("installation") for line in anchor} - {None}
    return [] if ours in named or not named else sorted(named)


def read_anchor(path=None):
    """The exported seal lines, in file order; [] when the file does not exist."""
    path = Path(path or settings.PNEUMOWEB_AUDIT_SEAL_FILE)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return _parsed(text.splitlines())


def _parsed(lines):
    parsed = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                parsed.append({"unreadable_line": number})
    return parsed


def _last_lines(fd, count):
    """The last ``count`` lines of an open file, read from its end: the file grows by a line a
    minute for years, and the exporter only needs the newest."""
    position, data = os.fstat(fd).st_size, b""
    while position > 0 and data.count(b"\n") <= count:
        step = min(65536, position)
        position -= step
        data = os.pread(fd, step, position) + data
    return data.decode(errors="replace").splitlines()[-count:]


def export_seals(path=None):
    """Append every seal not yet in the file, in order, each line flushed to disk. Returns how many.

    An exclusive lock on the file keeps two exporters from writing the same seal twice; a seal
    written just before a crash (and so not marked exported) is recognised by its number.
    """
    path = Path(path or settings.PNEUMOWEB_AUDIT_SEAL_FILE)
    pending = list(AuditSeal.objects.filter(exported_at=None).order_by("number"))
    if not pending:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
            os.write(fd, b"\n")  # a line cut short by a crash stays apart from the next one
        # Lines are written in number order, once each: the pending seals' lines (after a crash,
        # written but not marked) are among the last ones, with at most a cut-short line between.
        recent = _parsed(_last_lines(fd, len(pending) + 2))
        in_file = {line.get("number"): line.get("digest") for line in recent}
        ours = installation()
        for seal in pending:
            if seal.number in in_file and in_file[seal.number] != seal.digest:
                # Not ours to overwrite: verify_audit reports the difference (a restore starts a new file).
                log.error("Audit seal %d differs from the one in %s; not exported", seal.number, path)
                continue
            if seal.number not in in_file:
                os.write(fd, (json.dumps(anchor_line(seal, ours), sort_keys=True) + "\n").encode())
                written += 1
            AuditSeal.objects.filter(pk=seal.pk).update(exported_at=timezone.now())
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return written


def new_anchor_after_restore(manifest=None, options=None):
    """After a restore the database holds the seals of the backup's day; the file, the seals since.

    That file is kept as it is, renamed (verify_audit --seals on it reports what the restore lost),
    and the restored chain is exported to a new one.
    """
    path = Path(settings.PNEUMOWEB_AUDIT_SEAL_FILE)
    said = ""
    if path.exists():
        kept = path.with_name(f"{path.name}.before-restore-{timezone.now():%Y%m%dT%H%M%S}")
        path.rename(kept)
        log.warning("Restore: the sealed-digest file was kept as %s; a new one starts now", kept)
        said = f"The sealed-digest file was kept as {kept}; "
    AuditSeal.objects.update(exported_at=None)
    export_seals(path)
    return said + f"{path} now anchors the restored seals."


@dataclass(frozen=True)
class Problem:
    kind: str  # changed, removed, inserted, missing, seal
    entry_id: int | None
    seal: int | None
    detail: str

    def __str__(self):
        where = f"entry {self.entry_id}" if self.entry_id is not None else f"seal {self.seal}"
        return f"{self.kind}: {where} — {self.detail}"


@dataclass(frozen=True)
class Verdict:
    problems: list
    seals: int
    sealed_entries: int
    unsealed_entries: int
    anchored_seals: int

    @property
    def ok(self):
        return not self.problems

    @property
    def first(self):
        return self.problems[0] if self.problems else None


def verify(*, anchor_path=None, require_anchor=True):
    """Check every seal's chain and entries, and the seals against the exported file."""
    problems = []
    previous = GENESIS
    expected_first = 0
    sealed_entries = 0
    expected_number = 1
    seals = list(AuditSeal.objects.order_by("number"))
    for seal in seals:
        if seal.number != expected_number:
            problems.append(Problem("seal", None, seal.number,
                                    f"seals {expected_number}–{seal.number - 1} are missing from the database"))
        expected_number = seal.number + 1
        if seal.previous_digest != previous or seal.first_id != expected_first:
            problems.append(Problem("seal", None, seal.number, "does not follow the seal before it"))
        recomputed = seal_digest(number=seal.number, previous_digest=seal.previous_digest, first_id=seal.first_id,
                                 last_id=seal.last_id, entries=seal.entries, sealed_at=seal.sealed_at,
                                 format=seal.format)
        if recomputed != seal.digest:
            problems.append(Problem("seal", None, seal.number, "its digest does not match its contents"))
        problems.extend(_compare_entries(seal))
        sealed_entries += seal.count
        previous, expected_first = seal.digest, seal.last_id
    anchor = read_anchor(anchor_path)
    problems.extend(_compare_anchor(seals, anchor, require_anchor=require_anchor, anchor_path=anchor_path))
    unsealed = LogEntry.objects.filter(pk__gt=expected_first).count()
    return Verdict(sorted(problems, key=_order), len(seals), sealed_entries, unsealed, len(anchor))


def _order(problem):
    # Entry problems in id order; chain and anchor problems where their seal begins.
    return (problem.entry_id if problem.entry_id is not None else float("inf"), problem.seal or 0)


def _compare_entries(seal):
    sealed = {entry_id: digest for entry_id, digest in seal.entries}
    seen = set()
    for row in _entry_rows(seal.first_id, seal.last_id):
        entry_id = row["id"]
        seen.add(entry_id)
        if entry_id not in sealed:
            yield Problem("inserted", entry_id, seal.number,
                          f"is not in seal {seal.number}, which covers ids {seal.first_id + 1}–{seal.last_id}")
        elif entry_hash(row) != sealed[entry_id]:
            yield Problem("changed", entry_id, seal.number, f"differs from what seal {seal.number} recorded")
    for entry_id in sealed.keys() - seen:
        yield Problem("removed", entry_id, seal.number, f"was sealed in seal {seal.number} and is gone")


def _compare_anchor(seals, anchor, *, require_anchor, anchor_path):
    by_number = {seal.number: seal for seal in seals}
    path = anchor_path or settings.PNEUMOWEB_AUDIT_SEAL_FILE
    exported = [seal for seal in seals if seal.exported_at is not None]
    if not anchor:
        if exported and require_anchor:
            yield Problem("seal", None, exported[-1].number,
                          f"the sealed-digest file {path} is missing or empty: a removed tail cannot be ruled out")
        return
    ours = installation()  # once: the file holds a line a minute for years
    for line in anchor:
        number = line.get("number")
        if not isinstance(number, int):
            yield Problem("seal", None, None, f"{path} has an unreadable line {line}")
            continue
        if line.get("installation") not in (None, ours):
            yield Problem("seal", None, number, f"the line names another installation ({line['installation']})")
            continue
        seal = by_number.get(number)
        if seal is None:
            yield Problem("missing", line.get("first_id", 0) + 1, number,
                          f"entries {line.get('first_id', 0) + 1}–{line.get('last_id')} ({line.get('count')}) and "
                          f"seal {number} are in the sealed-digest file but not in the database")
        elif seal.digest != line.get("digest"):
            yield Problem("seal", None, number, "its digest differs from the one in the sealed-digest file")
