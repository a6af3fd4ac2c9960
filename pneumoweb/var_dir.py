"""The embedded defaults' folder (``PNEUMOWEB_VAR_DIR``, ``./var``): made once, never at import.

Holds the SQLite database, the file-system broker's folders, media, collected static files and a
random secret key (mode 0600) for a machine that sets no ``DJANGO_SECRET_KEY``. Settings only read
it; ``bin/run``, ``bin/worker`` and ``bin/test`` run ``python -m pneumoweb.var_dir`` first (idempotent).
Imports nothing from Django: it runs before settings can be read.
"""

import contextlib
import os
import secrets
import sys
import tempfile
from pathlib import Path

SECRET_KEY_FILE = "secret_key"


def broker_folders(var_dir):
    """The file-system Celery transport's folders under ``var_dir``."""
    root = Path(var_dir) / "broker"
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def prepare(var_dir, static_root=None):
    """Create the folders and, when missing, the secret key file. Safe to run again."""
    var_dir = Path(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    for folder in broker_folders(var_dir).values():
        folder.mkdir(parents=True, exist_ok=True)
    Path(static_root or var_dir / "staticfiles").mkdir(parents=True, exist_ok=True)
    key = var_dir / SECRET_KEY_FILE
    if not key.exists():
        # Written whole to a private temporary file, then linked into place: a reader never sees a
        # half-written key, and of two first starts at once the second keeps the first one's key.
        fd, temporary = tempfile.mkstemp(dir=var_dir, prefix=".secret_key-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key)
        finally:
            os.unlink(temporary)
    return var_dir


def read_secret_key(var_dir):
    """The key ``prepare`` wrote, or None when there is none yet."""
    try:
        return (Path(var_dir) / SECRET_KEY_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def unprepared_message(environ=os.environ):
    """Why a command cannot run yet ("" when it can): the embedded database's folder is missing."""
    var_dir = default_var_dir()
    if environ.get("DATABASE_URL") or var_dir.is_dir():
        return ""
    return (f"The embedded database lives in {var_dir}, which does not exist yet: run "
            "`python -m pneumoweb.var_dir` once (bin/run does), or set DATABASE_URL.")


def default_var_dir():
    return Path(os.environ.get("PNEUMOWEB_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")


if __name__ == "__main__":
    print(prepare(default_var_dir(), os.environ.get("DJANGO_STATIC_ROOT")), file=sys.stderr)
