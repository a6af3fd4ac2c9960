"""The audit trail: model changes, views, downloads and exports, with who and from where; append-only."""

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

from audit.pseudonyms import patient_pseudonym
from diagnosis.models import Patient

from ..base import api_client_for, verify_session
from ..factories import PASSWORD, PredictionFactory, StudyFactory, UserFactory, with_heatmaps

pytestmark = pytest.mark.django_db


def accesses(**data):
    return [e for e in LogEntry.objects.filter(action=LogEntry.Action.ACCESS)
            if all((e.additional_data or {}).get(k) == v for k, v in data.items())]


def test_a_clinicians_own_page_views_are_recorded_with_who_and_where(logged_in, clinician, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    logged_in.get(reverse("patient_detail", args=[patient.pk]), REMOTE_ADDR="10.1.2.3")
    logged_in.get(reverse("prediction_detail", args=[prediction.pk]), REMOTE_ADDR="10.1.2.3")
    views = accesses(action="view")
    assert {(e.content_type.model, e.object_pk) for e in views} == {("patient", str(patient.pk)),
                                                                    ("prediction", str(prediction.pk))}
    assert all(e.actor == clinician and e.remote_addr == "10.1.2.3" for e in views)


def test_api_reads_and_downloads_name_the_tokens_user(clinician, patient):
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    api = api_client_for(clinician)
    api.get(reverse("api:prediction-detail", args=[prediction.pk]))
    api.get(reverse("api:study-image", args=[prediction.study_id]))
    api.get(reverse("api:prediction-heatmap", args=[prediction.pk]))
    api.get(reverse("api:prediction-report", args=[prediction.pk]))
    what = sorted((e.additional_data["action"], e.additional_data.get("what", "")) for e in accesses())
    assert what == [("download", "X-ray image"), ("download", "combined heatmap"), ("download", "report PDF"),
                    ("view", "")]
    assert {e.actor for e in accesses()} == {clinician}


def test_changes_are_recorded_with_the_actor_for_pages_and_the_api(clinician, logged_in):
    logged_in.post(reverse("patient_create"), {"mrn": "A-1", "name": "Ada", "sex": "F"})
    api_client_for(clinician).post(reverse("api:patient-list"), {"mrn": "A-2", "name": "Bob"}, format="json")
    created = LogEntry.objects.filter(action=LogEntry.Action.CREATE, content_type__model="patient")
    # Named by pseudonyms, never by name or MRN (tests/audit/test_pseudonyms.py): erasure cannot edit the trail.
    assert sorted(e.object_repr for e in created) == sorted(
        f"Patient {patient_pseudonym(p.pk)}" for p in Patient.objects.filter(mrn__in=["A-1", "A-2"]))
    assert {e.actor for e in created} == {clinician}


def test_a_review_is_recorded_as_a_change_by_the_reviewer(reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    api_client_for(reviewer).post(reverse("api:prediction-review", args=[prediction.pk]), {"verdict": "agree"})
    [entry] = LogEntry.objects.filter(action=LogEntry.Action.UPDATE, content_type__model="prediction")
    assert entry.actor == reviewer and "review_verdict" in entry.changes_dict


@pytest.fixture
def admin_client():
    from django.test import Client

    admin = UserFactory(username="root-admin", role="reviewer")
    admin.is_superuser = admin.is_staff = True
    admin.save()
    client = Client()
    assert client.login(username=admin.username, password=PASSWORD)
    return verify_session(client, admin)  # an administrator must use a second factor


def test_administrators_see_filter_and_export_it_and_nobody_edits_it(admin_client, reviewer_client, patient):
    admin_client.get(reverse("patient_detail", args=[patient.pk]))
    changelist = reverse("admin:auditlog_logentry_changelist")
    page = admin_client.get(changelist, {"action__exact": LogEntry.Action.ACCESS})
    assert page.status_code == 200 and "view" in page.content.decode()
    export = admin_client.get(reverse("admin:auditlog_logentry_export"))
    rows = b"".join(export.streaming_content).decode().splitlines()
    assert rows[0].startswith("timestamp,actor,action,what") and any("view" in row for row in rows[1:])
    assert accesses(action="export", what="audit trail CSV")  # the export itself is on the record
    entry = LogEntry.objects.first()
    assert admin_client.post(reverse("admin:auditlog_logentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:auditlog_logentry_add")).status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk).exists()
    assert reviewer_client.get(changelist).status_code == 403  # administrators only


def test_exports_are_recorded(reviewer_client, reviewer):
    reviewer_client.get(reverse("admin:diagnosis_prediction_export"))
    [entry] = accesses(action="export")
    assert entry.additional_data["what"] == "predictions CSV" and entry.actor == reviewer
