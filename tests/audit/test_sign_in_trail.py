"""Sign-ins, failed sign-ins, sign-outs and reviews on the audit trail under their own names (issue 29 §7)."""

import pytest
from auditlog.models import LogEntry

from audit.admin import audit_what
from diagnosis.services import apply_review

from ..base import make_admin, signed_in_client
from ..factories import PASSWORD, PredictionFactory

pytestmark = pytest.mark.django_db


def whats(**filters):
    return [audit_what(entry) for entry in LogEntry.objects.filter(**filters).order_by("timestamp", "pk")]


def test_a_sign_in_a_failed_one_and_a_sign_out_are_recorded_with_the_address(client, clinician):
    assert not client.login(username=clinician.username, password="wrong-password")
    client.post("/accounts/login/", {"username": clinician.username, "password": "wrong-password"},
                REMOTE_ADDR="10.1.2.3")
    response = client.post("/accounts/login/", {"username": clinician.username, "password": PASSWORD},
                           REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    client.post("/accounts/logout/", REMOTE_ADDR="10.1.2.3")
    names = whats(object_pk=str(clinician.pk), action=LogEntry.Action.ACCESS)
    assert names.count("sign-in failed") >= 1 and "signed in" in names and "signed out" in names
    page_entries = LogEntry.objects.filter(object_pk=str(clinician.pk), remote_addr="10.1.2.3")
    assert {audit_what(e) for e in page_entries} >= {"sign-in failed", "signed in", "signed out"}


def test_a_failed_sign_in_of_no_account_keeps_no_name(client):
    client.post("/accounts/login/", {"username": "hunter2-typed-here", "password": "x"}, REMOTE_ADDR="10.9.9.9")
    entry = LogEntry.objects.get(remote_addr="10.9.9.9")
    assert audit_what(entry) == "sign-in failed unknown account"
    assert "hunter2" not in str(entry.additional_data) + entry.object_repr


def test_a_token_sign_in_is_recorded_too(client, clinician):
    response = client.post("/api/auth/token/", {"username": clinician.username, "password": PASSWORD},
                           content_type="application/json")
    assert response.status_code == 200
    assert "signed in for an API token" in whats(object_pk=str(clinician.pk), action=LogEntry.Action.ACCESS)


def test_a_review_is_named_as_one_and_the_admin_filters_by_what(reviewer):
    prediction = PredictionFactory(succeeded=True)
    apply_review(prediction, verdict="disagree", label="NORMAL", comment="", reviewer=reviewer)
    prediction.save()
    assert "review: disagree" in whats(object_pk=str(prediction.pk))
    admin = signed_in_client(make_admin())
    reviews = admin.get("/admin/auditlog/logentry/", {"what": "review"})
    assert reviews.status_code == 200 and "review: disagree" in reviews.content.decode()
    signins = admin.get("/admin/auditlog/logentry/", {"what": "signed in"})
    assert "review: disagree" not in signins.content.decode() and "signed in" in signins.content.decode()
