"""Who sees what: one place for the ownership rules used by pages, API and image views."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db.models import Exists, Q

from accounts.roles import SEES_EVERY_RECORD

from .models import Patient, Prediction, Study


def is_reviewer(user):
    return user.has_perm(SEES_EVERY_RECORD)


def can_review(user):
    return user.has_perm("diagnosis.review_prediction")


def can_monitor(user):
    """The monitoring page and API: reviewers and administrators."""
    return bool(user and user.is_authenticated and user.is_active and (is_reviewer(user) or user.is_superuser))


def _owned(user, path):
    """Rows whose patient (at ``path``) the user may see: their own, and the PACS account's when the
    user is in PNEUMOWEB_PACS_READERS_GROUP (pacs/). The group test is a subquery of the same SELECT,
    so the rule costs no query of its own (tests/web/test_query_counts.py)."""
    reads_pacs = Exists(Group.objects.filter(name=settings.PNEUMOWEB_PACS_READERS_GROUP, user=user.pk))
    return Q(**{f"{path}owner": user}) | (Q(**{f"{path}owner__username": settings.PNEUMOWEB_PACS_ACCOUNT}) & reads_pacs)


def visible_patients(user):
    qs = Patient.objects.all()
    return qs if is_reviewer(user) else qs.filter(_owned(user, ""))


def visible_studies(user):
    qs = Study.objects.select_related("patient")
    return qs if is_reviewer(user) else qs.filter(_owned(user, "patient__"))


def visible_predictions(user):
    qs = Prediction.objects.select_related("study__patient", "reviewed_by")
    return qs if is_reviewer(user) else qs.filter(_owned(user, "study__patient__"))


def writable_patients(user):
    """Studies are only added to one's own patients, reviewers included."""
    return Patient.objects.filter(owner=user)
