"""Pseudonyms in the audit trail: entries name patients and their records by keyed hashes, never by name or MRN.

Why: a patient's data can be erased (``diagnosis/erasure.py``), but the audit trail is append-only
and sealed (``audit/seals.py``): an entry cannot be edited afterwards without breaking the chain.
So entries must not hold what an erasure removes, from the moment they are written:

- ``object_repr``: django-auditlog names an object by ``str(instance)`` and offers no hook, so
  ``install()`` wraps its ``log_create`` once: an instance with an ``audit_name()`` method is named
  by it (``Patient P-3f9a…``, ``Study 12 of patient P-3f9a…``). Every auditlog change entry and
  every ``record_access`` entry goes through it.
- ``changes``: the apps register personal fields (name, MRN, birth date, free text, DICOM UIDs)
  with ``mask_fields`` and ``mask_callable="audit.pseudonyms.mask"``: the entry still says the
  field changed (from empty, to empty, or between two values), but no value is there, not even a
  hash of it; content hashes of images are not registered at all.
- searches: an admin export records its query string; ``masked_query`` masks free-text search terms.

A patient's pseudonym is HMAC-SHA256 of their internal id under ``PNEUMOWEB_PSEUDONYM_KEY`` (by
default derived from the secret key): it hashes no personal data, so even the key cannot turn a
name or MRN into it. While a patient exists, the admin shows their pseudonym; once erased, nothing
links it back.
"""

import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode

from django.conf import settings

SEARCH_PARAMETERS = ("q",)  # the admin's free-text search; filters (status=queued) stay readable
_UNSET = ("", "None")


def _key():
    return settings.PNEUMOWEB_PSEUDONYM_KEY.encode()


def pseudonym(kind, value):
    """A stable, keyed name for ``value`` of ``kind`` (e.g. "patient", 12 → "P-3f9a0c1d2e4b")."""
    digest = hmac.new(_key(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[:1].upper()}-{digest[:12]}"


def patient_pseudonym(patient_pk):
    return pseudonym("patient", patient_pk)


HIDDEN = "‹not recorded›"


def mask(value):
    """auditlog's mask_callable: a personal value is not recorded at all; an empty one stays empty.

    Not a hash of the value: anyone holding the key could test a guess (an MRN, one of ~40,000 birth
    dates) against it long after the patient was erased. The entry still says which field changed.
    """
    return value if value in _UNSET else HIDDEN


def masked_query(query_string):
    """A query string with its free-text search terms masked."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode([(name, mask(value) if name in SEARCH_PARAMETERS else value) for name, value in pairs])


def install():
    """Name instances that have ``audit_name()`` by it in every auditlog entry (called once, from ready())."""
    from auditlog.models import LogEntryManager

    original = LogEntryManager.log_create
    if getattr(original, "pseudonymous", False):
        return

    def log_create(self, instance, force_log=False, **kwargs):
        name = getattr(instance, "audit_name", None)
        if callable(name):
            kwargs.setdefault("object_repr", name())
        return original(self, instance, force_log=force_log, **kwargs)

    log_create.pseudonymous = True
    LogEntryManager.log_create = log_create


def pseudonymise_entries(apps, app_label, model, *, mask_fields, name, drop_fields=()):
    """For a data migration: rewrite the entries written before pseudonyms, in place.

    ``name(object_pk) -> str`` gives the new object_repr; the values of ``mask_fields`` in
    ``changes`` are masked and ``drop_fields`` removed. Runs before the first seal (the seals come with the same release), so
    the chain starts from the rewritten entries.
    """
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("auditlog", "LogEntry")
    content_type = ContentType.objects.filter(app_label=app_label, model=model).first()
    if content_type is None:
        return 0
    rewritten = 0
    for entry in LogEntry.objects.filter(content_type=content_type).iterator(chunk_size=500):
        changes = entry.changes if isinstance(entry.changes, dict) else None
        if changes:
            changes = {field: ([mask(str(v)) for v in values] if field in mask_fields and isinstance(values, list)
                               else values) for field, values in changes.items() if field not in drop_fields}
        LogEntry.objects.filter(pk=entry.pk).update(
            object_repr=name(entry.object_pk), changes=changes,
            changes_text="" if changes is not None else entry.changes_text)
        rewritten += 1
    return rewritten
