"""The database connection of a long-lived worker thread, made fit for the next unit of work."""

from django.db import close_old_connections, connection


def refresh_connection():
    """Replace a connection a database restart broke (or one past CONN_MAX_AGE) instead of reusing it.

    Never inside an atomic block: closing there would end that block's transaction. Only a test's
    wrapper puts one around a job or a reconciler round; a worker never does.
    """
    if not connection.in_atomic_block:
        close_old_connections()
