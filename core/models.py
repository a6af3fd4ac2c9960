"""Core's own rows: the periodic jobs' bookkeeping (core/periodic.py)."""

from django.db import models


class PeriodicJob(models.Model):
    """One periodic job (core/periodic.py): when its next round is due, and how its last one went."""

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        FAILED = "failed", "failed"

    name = models.CharField(max_length=80, primary_key=True)
    next_due = models.DateTimeField(help_text="A scheduler claims the round by moving this forward.")
    last_started = models.DateTimeField(null=True, blank=True)
    last_finished = models.DateTimeField(null=True, blank=True)
    last_seconds = models.FloatField(null=True, blank=True)
    last_outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    last_detail = models.TextField(blank=True, help_text="What the last round did, or its error.")
    last_host = models.CharField(max_length=100, blank=True, help_text="host:pid of the process that ran it.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name
