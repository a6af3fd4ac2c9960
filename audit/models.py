"""The audit trail's seals (``audit/seals.py``): the entries themselves are django-auditlog's ``LogEntry``."""

from django.db import models


class AuditSeal(models.Model):
    """One closed window of audit entries: their hashes, chained to the seal before by ``previous_digest``."""

    number = models.PositiveIntegerField(unique=True, help_text="1, 2, …: unique, so two sealers cannot both add one.")
    format = models.PositiveSmallIntegerField(default=1, help_text="Which columns an entry's hash covers.")
    first_id = models.BigIntegerField(help_text="The seal covers entries with first_id < id ≤ last_id.")
    last_id = models.BigIntegerField()
    count = models.PositiveIntegerField()
    entries = models.JSONField(help_text="[[entry id, sha256 of the entry], …] in id order.")
    previous_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    sealed_at = models.DateTimeField()
    exported_at = models.DateTimeField(
        null=True, blank=True, help_text="When the seal was appended to PNEUMOWEB_AUDIT_SEAL_FILE.")

    class Meta:
        ordering = ["number"]

    def __str__(self):
        return f"Audit seal {self.number} (entries {self.first_id + 1}–{self.last_id})"


class Installation(models.Model):
    """This installation's name for its audit trail: one row, made by the migration, carried by backups.

    Every line of the sealed-digest file names it, so ``verify_audit --seals`` can tell another
    installation's file (refused as such) from this one's file changed (tampering). A restore
    brings the row back with the database: the restored site continues the same trail.
    """

    uuid = models.UUIDField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"installation {self.uuid}"
