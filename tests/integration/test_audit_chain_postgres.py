"""The audit chain on a real PostgreSQL: concurrent writers with a sealer beside them, then tampering in SQL.

Four writer processes insert audit entries as requests do while a fifth process seals every
200 ms; every writer must finish without an error and the sealed trail must verify. Then each
of the four kinds of tampering is done in SQL (psycopg, as someone with database access would)
and ``manage.py verify_audit`` must name it, and name nothing once it is undone.
Throughput with and without the sealer is measured by bench/bench_audit.py, not here.
"""

import json
import subprocess
import sys
import time

import pytest

from ..servers import POSTGRES_URL, require
from ..stack import REPO, Stack, _psycopg_conninfo, create_database, drop_database, migrated_postgres_template

pytestmark = pytest.mark.integration

WRITERS = 4
ENTRIES_PER_WRITER = 150

WRITE = """
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username="alice")
for n in range({count}):
    LogEntry.objects.log_create(user, force_log=True, action=LogEntry.Action.ACCESS,
                                additional_data={{"action": "view", "writer": {writer}, "n": n}})
print("wrote", {count})
"""

SEAL_UNTIL_TOLD = """
import pathlib, time
from audit.seals import seal_due
stop = pathlib.Path({stop!r})
made = 0
while not stop.exists():
    made += len(seal_due())
    time.sleep(0.2)
print("seals", made)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require(POSTGRES_URL, "PostgreSQL")
    database = create_database(POSTGRES_URL, template=migrated_postgres_template(POSTGRES_URL))
    try:
        # The chain only: no web server or worker is started. Entries written in the last second
        # are left for the next round, as a commit may still be on its way.
        stack = Stack(tmp_path_factory.mktemp("audit"), database_url=database, migrated=True,
                      extra_env={"PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS": "1"})
        stack.create_user("alice")
        yield stack
    finally:
        drop_database(database)


def shell(stack, code):
    return subprocess.Popen([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=stack.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def execute(stack, statement, params=()):
    import psycopg

    with psycopg.connect(_psycopg_conninfo(stack.database_url), autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def verify(stack):
    result = subprocess.run([sys.executable, "manage.py", "verify_audit", "--json"], cwd=REPO, env=stack.env,
                            capture_output=True, text=True, timeout=120)
    verdict = json.loads(result.stdout)
    assert (result.returncode == 0) == verdict["ok"], result.stderr
    return verdict


def first_problem(stack):
    verdict = verify(stack)
    assert not verdict["ok"]
    problem = verdict["problems"][0]
    return problem["kind"], problem["entry_id"]


@pytest.fixture(scope="module")
def sealed(stack, tmp_path_factory):
    stop = tmp_path_factory.mktemp("sealer") / "stop"
    sealer = shell(stack, SEAL_UNTIL_TOLD.format(stop=str(stop)))
    writers = [shell(stack, WRITE.format(count=ENTRIES_PER_WRITER, writer=w)) for w in range(WRITERS)]
    outputs = [writer.communicate(timeout=300) for writer in writers]
    time.sleep(1.5)  # past the grace: the sealer's next rounds take the rest
    stop.touch()
    sealer_out, sealer_err = sealer.communicate(timeout=120)
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert out.strip().endswith(f"wrote {ENTRIES_PER_WRITER}"), (out, err)
    assert sealer.returncode == 0, sealer_err
    stack.manage("seal_audit")
    return int(sealer_out.split()[-1])


def test_it_seals_concurrent_writers_without_failing_them(stack, sealed):
    verdict = verify(stack)
    assert verdict["ok"], verdict["problems"]
    written = execute(stack, "SELECT count(*) FROM auditlog_logentry")[0][0]
    assert written >= WRITERS * ENTRIES_PER_WRITER
    assert verdict["sealed_entries"] == written and verdict["unsealed_entries"] == 0
    assert sealed >= 1  # the sealer ran while they wrote
    assert verdict["seals"] == verdict["anchored_seals"] >= sealed


def test_it_names_a_changed_entry_and_clears_when_undone(stack, sealed):
    entry_id, repr_ = execute(stack, "SELECT id, object_repr FROM auditlog_logentry ORDER BY id OFFSET 100 LIMIT 1")[0]
    execute(stack, "UPDATE auditlog_logentry SET object_repr = 'mallory' WHERE id = %s", [entry_id])
    try:
        assert first_problem(stack) == ("changed", entry_id)
    finally:
        execute(stack, "UPDATE auditlog_logentry SET object_repr = %s WHERE id = %s", [repr_, entry_id])
    assert verify(stack)["ok"]


def test_it_names_a_removed_entry_and_clears_when_undone(stack, sealed):
    (row,) = execute(stack, "SELECT * FROM auditlog_logentry ORDER BY id OFFSET 200 LIMIT 1")
    columns = [c[0] for c in execute(stack, "SELECT column_name, ordinal_position FROM information_schema.columns "
                                             "WHERE table_name = 'auditlog_logentry' ORDER BY ordinal_position")]
    execute(stack, "DELETE FROM auditlog_logentry WHERE id = %s", [row[0]])
    try:
        assert first_problem(stack) == ("removed", row[0])
    finally:
        from psycopg.types.json import Jsonb

        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in row]
        execute(stack, f"INSERT INTO auditlog_logentry ({', '.join(columns)}) VALUES "
                       f"({', '.join(['%s'] * len(columns))})", values)
    assert verify(stack)["ok"]


def test_it_names_an_inserted_entry(stack, sealed):
    # A gap, as a rolled-back request leaves one: an id taken from the sequence and never used.
    (gap,) = execute(stack, "SELECT nextval(pg_get_serial_sequence('auditlog_logentry', 'id'))")[0]
    stack.manage("shell", "-c", WRITE.format(count=3, writer=99))
    execute(stack, "UPDATE auditlog_logentry SET timestamp = now() - interval '1 hour' WHERE id > %s", [gap])
    stack.manage("seal_audit")
    assert verify(stack)["ok"]
    execute(stack, "INSERT INTO auditlog_logentry (id, content_type_id, object_pk, object_id, object_repr, action,"
                   " changes_text, changes, actor_id, cid, remote_addr, remote_port, timestamp, additional_data,"
                   " actor_email, serialized_data) SELECT %s, content_type_id, object_pk, object_id, 'forged', action,"
                   " changes_text, changes, actor_id, cid, remote_addr, remote_port, timestamp, additional_data,"
                   " actor_email, serialized_data FROM auditlog_logentry WHERE id = %s", [gap, gap + 1])
    try:
        assert first_problem(stack) == ("inserted", gap)
    finally:
        execute(stack, "DELETE FROM auditlog_logentry WHERE id = %s", [gap])
    assert verify(stack)["ok"]


def test_it_names_a_tail_missing_from_the_end(stack, sealed):
    stack.manage("shell", "-c", WRITE.format(count=5, writer=100))
    execute(stack, "UPDATE auditlog_logentry SET timestamp = now() - interval '1 hour' "
                   "WHERE id > (SELECT max(last_id) FROM audit_auditseal)")
    stack.manage("seal_audit")
    number, first_id = execute(stack, "SELECT number, first_id FROM audit_auditseal ORDER BY number DESC LIMIT 1")[0]
    execute(stack, "DELETE FROM auditlog_logentry WHERE id > %s", [first_id])
    execute(stack, "DELETE FROM audit_auditseal WHERE number = %s", [number])
    verdict = verify(stack)
    assert (verdict["problems"][0]["kind"], verdict["problems"][0]["entry_id"]) == ("missing", first_id + 1)
    assert verdict["problems"][0]["seal"] == number
