"""Backup and restore: one consistent database snapshot, the files its rows name, and a manifest that proves both.

``backup(dest)`` writes ``dest/`` with

- ``database.dump`` (PostgreSQL: ``pg_dump --format=custom`` of an exported snapshot) or
  ``database.sqlite3`` (SQLite's online backup API): a consistent copy taken while uploads go on;
- ``media/``: every file a row of that snapshot names (studies, heatmaps, reports, held PACS
  pixels), copied after the snapshot. Stored files are written once under random names and never
  changed, so a file a snapshot row names is the file that row meant;
- ``manifest.json``: per table the number of rows and a sha256 over the rows themselves (read in
  the same snapshot), the sha256 of the database file and of every copied file, and the files a
  row names that were missing when the backup ran.

``restore(source)`` refuses anything but an empty database and an empty media folder, checks every
checksum before it writes, loads the database, checks each table's rows against the manifest,
copies the files, migrates (a backup from older code), and puts the jobs that were queued or
running at backup time back in the queue so that the worker finishes them. Hooks registered with
``after_restore`` run last (the patient erasures made since the backup are re-applied there).

Generic on purpose: tables and file fields come from the app registry, so this module imports no
app of the project and a new model with a FileField is backed up without a change here.
"""

import datetime
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connections, transaction

from .canonical import canonical_json
from .stored_files import named_files

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MEDIA = "media"
FORMAT = 1
_after_restore = []
_before_restore = []


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why, for the operator."""


def after_restore(hook):
    """Register ``hook(manifest, options)`` to run at the end of every restore (a decorator). It may
    return a sentence for the operator (what it did), which the restore command prints."""
    _after_restore.append(hook)
    return hook


def before_restore(check):
    """Register ``check(manifest, options)`` to run before a restore writes anything; it raises BackupError
    to refuse, or returns a sentence for the operator (a warning)."""
    _before_restore.append(check)
    return check


def sha256_file(path):
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _tables():
    """Every concrete table once (many-to-many tables included), with its model."""
    seen = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            seen.setdefault(model._meta.db_table, model)
    return dict(sorted(seen.items()))


def table_layout():
    """{table: {"columns": [...], "key": primary-key column}} of the current code's models."""
    return {table: {"columns": [field.column for field in model._meta.concrete_fields], "key": model._meta.pk.column}
            for table, model in _tables().items()}


def table_digests(using="default", layout=None):
    """{table: {"rows", "sha256", "columns", "key"}} over every row's values in key order.

    Read with plain SQL over the columns ``layout`` names (by default the current models'; at a
    restore, the backup's own), so a backup from older code is checked as it was written, before
    ``migrate`` changes it. Server-side cursors: a large audit table is not read into memory at once.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    digests = {}
    with transaction.atomic(using=using):
        for table, shape in sorted((layout or table_layout()).items()):
            digest, rows = hashlib.sha256(), 0
            sql = (f"SELECT {', '.join(quote(c) for c in shape['columns'])} FROM {quote(table)} "
                   f"ORDER BY {quote(shape['key'])}")
            with connection.chunked_cursor() as cursor:
                cursor.execute(sql)
                while batch := cursor.fetchmany(2000):
                    for row in batch:
                        digest.update(canonical_json(row).encode())
                        digest.update(b"\n")
                    rows += len(batch)
            digests[table] = {"rows": rows, "sha256": digest.hexdigest(), **shape}
    return digests


# --- backup ------------------------------------------------------------------------------------

def backup(dest):
    """Write a backup into the new folder ``dest``; returns the manifest.

    A folder that cannot be made or written (a read-only parent, a full disk) is a BackupError
    naming it, never a traceback."""
    dest = Path(dest)
    try:
        if dest.exists() and any(dest.iterdir()):
            raise BackupError(f"{dest} is not empty: a backup goes into a new folder")
        dest.mkdir(parents=True, exist_ok=True)
        if not os.access(dest, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(dest))
    except OSError as error:
        where = error.filename or dest
        raise BackupError(f"Cannot write the backup to {dest}: {error.strerror or error} ({where})") from None
    vendor = connections["default"].vendor
    if vendor == "postgresql":
        database_file, snapshot = _dump_postgres(dest)
    elif vendor == "sqlite":
        database_file, snapshot = _copy_sqlite(dest)
    else:
        raise BackupError(f"No backup for a {vendor} database")
    files, missing = _copy_media(snapshot["files"], dest / MEDIA)
    manifest = {
        "format": FORMAT,
        "created_at": snapshot["taken_at"],
        "database": {"vendor": vendor, "file": database_file.name, "sha256": sha256_file(database_file)},
        "tables": snapshot["tables"],
        "files": files,
        "missing_files": missing,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _snapshot_facts(using):
    return {"taken_at": datetime.datetime.now(datetime.UTC).isoformat(), "tables": table_digests(using),
            "files": named_files(using)}


def _dump_postgres(dest):
    """pg_dump of a snapshot exported by a transaction that also reads the manifest's facts."""
    target = dest / "database.dump"
    connection = connections["default"]
    with transaction.atomic(using="default"):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            (snapshot_id,) = cursor.fetchone()
        command = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot_id}",
                   f"--file={target}", "--dbname", connection.settings_dict["NAME"]]
        result = subprocess.run(command, env=_pg_env(connection.settings_dict), capture_output=True, text=True)
        if result.returncode != 0:
            raise BackupError(f"pg_dump failed: {result.stderr.strip()[-2000:]}")
        facts = _snapshot_facts("default")  # the same snapshot the dump saw
    return target, facts


def _pg_env(settings_dict):
    env = {**os.environ}
    for key, var in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if settings_dict.get(key):
            env[var] = str(settings_dict[key])
    return env


def _copy_sqlite(dest):
    target = dest / "database.sqlite3"
    source = sqlite3.connect(connections["default"].settings_dict["NAME"], timeout=30)
    try:
        with sqlite3.connect(target) as copy:
            source.backup(copy)  # a consistent copy while web and worker keep writing
    finally:
        source.close()
    alias = _open_alias("backup-copy", target)
    try:
        facts = _snapshot_facts(alias)
    finally:
        _close_alias(alias)
    return target, facts


def _open_alias(alias, name):
    # Not the default's OPTIONS: its "journal_mode=WAL" would turn the copy into a WAL database,
    # which a read-only backup medium cannot open.
    connections.settings[alias] = {**connections.settings["default"], "NAME": str(name), "OPTIONS": {"timeout": 30}}
    return alias


def _close_alias(alias):
    connections[alias].close()
    del connections.settings[alias]
    del connections[alias]


def _copy_media(names, target):
    root = Path(settings.MEDIA_ROOT)
    files, missing = {}, []
    for name, (table, pk, field) in sorted(names.items()):
        source = root / name
        if not source.is_file():
            missing.append({"file": name, "table": table, "pk": pk, "field": field})
            log.warning("Backup: %s (%s %s %s) is missing from the media folder", name, table, pk, field)
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        files[name] = sha256_file(destination)
    return files, missing


# --- restore -----------------------------------------------------------------------------------

def read_manifest(source):
    try:
        manifest = json.loads((Path(source) / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} has no {MANIFEST}: not a backup folder") from None
    except ValueError as error:
        raise BackupError(f"{source}/{MANIFEST} is not readable JSON: {error}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"Backup format {manifest.get('format')!r} is not {FORMAT}")
    return manifest


def check_backup(source, manifest):
    """Every checksum in the manifest against the files in ``source``; a list of what differs."""
    source = Path(source)
    problems = []
    database = source / manifest["database"]["file"]
    if not database.is_file() or sha256_file(database) != manifest["database"]["sha256"]:
        problems.append(f"{database.name} is missing or changed")
    for name, digest in manifest["files"].items():
        path = source / MEDIA / name
        if not path.is_file() or sha256_file(path) != digest:
            problems.append(f"{MEDIA}/{name} is missing or changed")
    return problems


def restore(source, *, options=None):
    """Restore the backup in ``source`` onto the configured (empty) database and media folder.

    ``options``: the operator's choices the hooks read (the restore command's flags). Returns the
    manifest with ``said``: the hooks' sentences, in order, for the operator's main output."""
    options = dict(options or {})
    said = []
    source = Path(source)
    manifest = read_manifest(source)
    problems = check_backup(source, manifest)
    if problems:
        raise BackupError("The backup does not match its manifest: " + "; ".join(problems[:10]))
    _refuse_unless_empty()
    for check in _before_restore:
        said.append(check(manifest, options))
    vendor = connections["default"].vendor
    if vendor != manifest["database"]["vendor"]:
        raise BackupError(f"The backup is of a {manifest['database']['vendor']} database; this one is {vendor}")
    database = source / manifest["database"]["file"]
    if vendor == "postgresql":
        _load_postgres(database)
    else:
        _load_sqlite(database)
    restored = table_digests(layout={table: {"columns": facts["columns"], "key": facts["key"]}
                                     for table, facts in manifest["tables"].items()})
    differs = [table for table, facts in restored.items() if manifest["tables"][table] != facts]
    if differs:
        raise BackupError(f"Restored tables differ from the manifest: {', '.join(differs[:10])}")
    root = Path(settings.MEDIA_ROOT)
    for name in manifest["files"]:
        destination = root / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / MEDIA / name, destination)
    call_command("migrate", interactive=False, verbosity=0)  # a backup taken by older code
    for hook in _after_restore:
        said.append(hook(manifest, options))
    return {**manifest, "said": [sentence for sentence in said if sentence]}


def _refuse_unless_empty():
    tables = connections["default"].introspection.table_names()
    if tables:
        raise BackupError(f"The database is not empty ({len(tables)} tables): restore only onto an empty one")
    root = Path(settings.MEDIA_ROOT)
    if root.exists() and any(path.is_file() for path in root.rglob("*")):
        raise BackupError(f"The media folder {root} holds files: restore only into an empty one")


def _load_postgres(database):
    connection = connections["default"]
    connection.close()
    command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
               "--dbname", connection.settings_dict["NAME"], str(database)]
    result = subprocess.run(command, env=_pg_env(connection.settings_dict), capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[-2000:]}")


def _load_sqlite(database):
    connection = connections["default"]
    connection.close()
    target = Path(connection.settings_dict["NAME"])
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        leftover.unlink(missing_ok=True)  # an empty database file (checked above) and its journal
    with sqlite3.connect(database) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
