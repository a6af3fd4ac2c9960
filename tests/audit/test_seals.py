"""The audit trail's seals: chaining, the exported file, and verify() finding each kind of tampering in SQL.

Tampering is done with raw SQL on the tables, as someone with database access would, never
through the models. The same four cases run on a real PostgreSQL with concurrent writers in
tests/integration/test_audit_chain_postgres.py.
"""

import datetime
import json

import pytest
from auditlog.models import LogEntry
from django.db import connection
from django.utils import timezone

from audit.models import AuditSeal
from audit.seals import GENESIS, export_seals, read_anchor, seal_due, verify
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def seal_file(settings, tmp_path):
    settings.PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS = 60
    settings.PNEUMOWEB_AUDIT_SEAL_FILE = tmp_path / "seals.jsonl"
    return settings.PNEUMOWEB_AUDIT_SEAL_FILE


def write_entries(count, *, age_seconds=600):
    """``count`` access entries, backdated past the grace period; their ids in order."""
    user = UserFactory()
    ids = []
    for i in range(count):
        entry = LogEntry.objects.log_create(user, force_log=True, action=LogEntry.Action.ACCESS,
                                            additional_data={"action": "view", "n": i})
        ids.append(entry.pk)
    LogEntry.objects.filter(pk__in=ids).update(timestamp=timezone.now() - datetime.timedelta(seconds=age_seconds))
    return ids


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def all_entry_ids():
    return list(LogEntry.objects.order_by("pk").values_list("pk", flat=True))


def test_it_seals_entries_older_than_the_grace_and_leaves_new_ones():
    old = write_entries(4)
    new = write_entries(2, age_seconds=0)
    (seal,) = seal_due()
    assert seal.number == 1 and seal.previous_digest == GENESIS
    assert [entry_id for entry_id, _ in seal.entries] == [i for i in all_entry_ids() if i <= old[-1]]
    assert seal.last_id == old[-1] and seal.count == len(seal.entries)
    assert all(entry_id > seal.last_id for entry_id in new)
    assert verify().unsealed_entries == LogEntry.objects.filter(pk__gt=old[-1]).count() >= 2


def test_it_chains_each_seal_to_the_one_before():
    write_entries(3)
    (first,) = seal_due()
    write_entries(3)
    (second,) = seal_due()
    assert second.number == 2
    assert second.previous_digest == first.digest
    assert second.first_id == first.last_id
    assert seal_due() == []


def test_it_appends_each_seal_once_to_the_file(seal_file):
    write_entries(2)
    (first,) = seal_due()
    write_entries(2)
    (second,) = seal_due()
    # A crash after writing a line but before marking it exported must not write it twice.
    AuditSeal.objects.update(exported_at=None)
    assert export_seals() == 0
    lines = read_anchor()
    assert [line["number"] for line in lines] == [1, 2]
    assert [line["digest"] for line in lines] == [first.digest, second.digest]
    assert all(json.loads(raw) for raw in seal_file.read_text().splitlines())


def test_it_finds_an_intact_trail_intact():
    write_entries(5)
    seal_due()
    write_entries(3)
    seal_due()
    verdict = verify()
    assert verdict.ok, verdict.problems
    assert verdict.seals == 2 and verdict.anchored_seals == 2
    assert verdict.sealed_entries == LogEntry.objects.count()


def test_it_names_the_first_changed_entry():
    ids = write_entries(6)
    seal_due()
    sql("UPDATE auditlog_logentry SET remote_addr = %s WHERE id = %s", ["10.6.6.6", ids[4]])
    sql("UPDATE auditlog_logentry SET object_repr = %s WHERE id = %s", ["someone else", ids[2]])
    verdict = verify()
    assert not verdict.ok
    assert (verdict.first.kind, verdict.first.entry_id) == ("changed", ids[2])
    assert [(p.kind, p.entry_id) for p in verdict.problems] == [("changed", ids[2]), ("changed", ids[4])]


def test_it_names_a_removed_entry():
    ids = write_entries(6)
    seal_due()
    sql("DELETE FROM auditlog_logentry WHERE id = %s", [ids[3]])
    verdict = verify()
    assert [(p.kind, p.entry_id, p.seal) for p in verdict.problems] == [("removed", ids[3], 1)]


def test_it_names_an_inserted_entry():
    ids = write_entries(6)
    # An id the sequence handed out and never committed (a rolled-back request): a gap in the range.
    LogEntry.objects.filter(pk=ids[2]).delete()
    seal_due()
    assert verify().ok
    sql("INSERT INTO auditlog_logentry (id, content_type_id, object_pk, object_id, object_repr, action, changes_text,"
        " changes, actor_id, cid, remote_addr, remote_port, timestamp, additional_data, actor_email, serialized_data)"
        " SELECT %s, content_type_id, object_pk, object_id, 'forged', action, changes_text, changes, actor_id, cid,"
        " remote_addr, remote_port, timestamp, additional_data, actor_email, serialized_data"
        " FROM auditlog_logentry WHERE id = %s", [ids[2], ids[1]])
    verdict = verify()
    assert [(p.kind, p.entry_id) for p in verdict.problems] == [("inserted", ids[2])]


def test_it_names_entries_missing_from_the_end():
    write_entries(4)
    seal_due()
    tail = write_entries(3)
    (last,) = seal_due()
    # Someone removes the last entries and the seal that covers them; the exported file remembers it.
    sql("DELETE FROM auditlog_logentry WHERE id > %s", [last.first_id])
    sql("DELETE FROM audit_auditseal WHERE number = %s", [last.number])
    verdict = verify()
    assert verdict.first.kind == "missing"
    assert verdict.first.entry_id == last.first_id + 1 <= tail[0]
    assert verdict.first.seal == 2
    assert "sealed-digest file" in str(verdict.first)


def test_it_finds_a_seal_rewritten_to_hide_a_change():
    ids = write_entries(4)
    (seal,) = seal_due()
    sql("UPDATE auditlog_logentry SET object_repr = 'x' WHERE id = %s", [ids[0]])
    # Re-hashing the changed entry into the seal breaks the seal's digest (and the file's copy of it).
    from audit.seals import entry_hash, ENTRY_FIELDS  # noqa: I001 - kept beside the only use
    row = LogEntry.objects.filter(pk=ids[0]).values(*ENTRY_FIELDS).get()
    entries = [[i, entry_hash(row) if i == ids[0] else h] for i, h in seal.entries]
    sql("UPDATE audit_auditseal SET entries = %s WHERE number = 1", [json.dumps(entries)])
    kinds = {(p.kind, p.seal) for p in verify().problems}
    assert ("seal", 1) in kinds
    assert all(kind != "changed" for kind, _ in kinds)


def test_it_says_when_the_anchor_file_is_gone(seal_file):
    write_entries(2)
    seal_due()
    seal_file.unlink()
    verdict = verify()
    assert not verdict.ok
    assert "missing or empty" in verdict.first.detail


def test_it_lets_writers_carry_on_while_sealing():
    """Sealing reads entries and adds a seal row; it neither locks nor changes a LogEntry."""
    ids = write_entries(3)
    before = list(LogEntry.objects.filter(pk__in=ids).values())
    seal_due()
    more = write_entries(2)
    assert list(LogEntry.objects.filter(pk__in=ids).values()) == before
    assert LogEntry.objects.filter(pk__in=more).count() == 2


def test_it_keeps_a_line_cut_short_by_a_crash_apart_from_the_next(seal_file):
    write_entries(2)
    seal_due()
    with open(seal_file, "a") as fh:
        fh.write('{"number": 2, "dige')  # a crash in the middle of a line
    write_entries(2)
    (second,) = seal_due()
    lines = seal_file.read_text().splitlines()
    assert lines[-1] == json.dumps(json.loads(lines[-1]), sort_keys=True) and json.loads(lines[-1])["number"] == 2
    assert [line.get("number") for line in read_anchor() if "number" in line][-1] == second.number


def test_it_does_not_mark_exported_a_seal_the_file_holds_differently(seal_file):
    write_entries(2)
    seal_due()
    seal_file.write_text(seal_file.read_text().replace('"digest": "', '"digest": "0'))
    AuditSeal.objects.update(exported_at=None)
    assert export_seals() == 0
    assert AuditSeal.objects.get().exported_at is None
    assert any(p.kind == "seal" and "sealed-digest file" in p.detail for p in verify().problems)
