"""Erasing a patient's data: rows, files, PACS records and reports gone; refused while running; the trail intact."""

import datetime
import json
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from django.conf import settings
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from audit.pseudonyms import patient_pseudonym
from audit.seals import seal_due, verify
from diagnosis.erasure import ErasureRefused, approve, read_log, request_erasure
from diagnosis.models import Erasure, Patient, Prediction, Report, Study
from diagnosis.reports import current_report
from diagnosis.services import submit_study
from pacs.models import Destination, Export, ImagingStudy, Instance, PacsPatient

from ..base import api_client_for, make_admin, verify_session
from ..factories import PASSWORD, PatientFactory, PredictionFactory, StudyFactory, UserFactory, with_heatmaps

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return make_admin()


@pytest.fixture
def second_admin():
    return make_admin("other-admin")


@pytest.fixture
def admin_client(client, admin_user):
    assert client.login(username=admin_user.username, password=PASSWORD)
    return verify_session(client, admin_user)


def records_of(patient, count=2):
    """Finished predictions with heatmaps and a report each; returns every stored file's path."""
    for _ in range(count):
        prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
        current_report(prediction)
    root = Path(settings.MEDIA_ROOT)
    names = list(Study.objects.filter(patient=patient).values_list("image", flat=True))
    for prediction in Prediction.objects.filter(study__patient=patient):
        names += [getattr(prediction, field).name for field in Prediction.HEATMAP_BRANCHES.values()]
    names += list(Report.objects.filter(prediction__study__patient=patient).values_list("pdf", flat=True))
    return [root / name for name in names]


def erase(patient, by, reason="GDPR art. 17 request #42", **kwargs):
    return request_erasure(patient, by=by, reason=reason, **kwargs)


def test_it_erases_every_row_and_file_of_the_patient_and_nothing_else(admin_user, patient, foreign_patient,
                                                                      django_capture_on_commit_callbacks):
    files = records_of(patient)
    kept = records_of(foreign_patient, count=1)
    assert len(files) == 2 * 5 and all(path.is_file() for path in files)
    pk = patient.pk
    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase(patient, admin_user)
    assert erasure.status == Erasure.Status.DONE and erasure.approved_by == admin_user
    assert not Patient.objects.filter(pk=pk).exists()
    assert not Study.objects.filter(patient_id=pk).exists()
    assert Prediction.objects.count() == 1 and Report.objects.count() == 1  # the other patient's
    assert not any(path.exists() for path in files)
    assert all(path.is_file() for path in kept)
    assert len(erasure.erased["studies"]) == 2 and erasure.erased["files"] == 10


def test_it_refuses_while_a_study_is_running_and_changes_nothing(admin_user, patient):
    PredictionFactory(study=StudyFactory(patient=patient), status=Prediction.Status.RUNNING)
    with pytest.raises(ErasureRefused, match="still being assessed"):
        erase(patient, admin_user)
    assert Patient.objects.filter(pk=patient.pk).exists() and Erasure.objects.count() == 0


def test_it_requires_a_reason(admin_user, patient):
    with pytest.raises(ErasureRefused, match="reason"):
        erase(patient, admin_user, reason="   ")
    assert Patient.objects.filter(pk=patient.pk).exists()


def test_it_logs_the_erasure_outside_the_database_without_personal_data(admin_user, patient,
                                                                       django_capture_on_commit_callbacks):
    records_of(patient, count=1)
    name, mrn, pk = patient.name, patient.mrn, patient.pk
    with django_capture_on_commit_callbacks(execute=True):
        erasure = erase(patient, admin_user)
    (line,) = read_log()
    assert line["erasure"] == erasure.pk and line["patient_pk"] == pk
    assert line["pseudonym"] == patient_pseudonym(pk)
    text = Path(settings.PNEUMOWEB_ERASURE_LOG).read_text() + json.dumps(erasure.erased)
    assert name not in text and mrn not in text
    assert line["reason"] == erasure.reason  # a restore that erases again keeps the reason it was made for


def test_it_refuses_to_erase_while_the_erasure_log_is_not_set(admin_user, patient, settings):
    from diagnosis.erasure import check_erasure_log

    settings.PNEUMOWEB_ERASURE_LOG = None  # its default: a log inside var/ would die with the machine
    with pytest.raises(ErasureRefused, match="PNEUMOWEB_ERASURE_LOG is not set: an erasure must be logged"):
        request_erasure(patient, by=admin_user, reason="request 9")
    assert Patient.objects.filter(pk=patient.pk).exists() and not Erasure.objects.exists()
    [warning] = check_erasure_log()
    assert warning.id == "pneumoweb.W002" and "off this machine" in warning.hint
    settings.PNEUMOWEB_ERASURE_LOG = "/somewhere/kept/erasures.jsonl"
    assert check_erasure_log() == []


def test_it_leaves_a_trail_that_names_no_one_and_still_verifies(admin_user, clinician, patient,
                                                                django_capture_on_commit_callbacks):
    api_client_for(clinician).get(reverse("api:patient-detail", args=[patient.pk]))
    records_of(patient, count=1)
    LogEntry.objects.update(timestamp=timezone.now() - datetime.timedelta(hours=1))
    assert seal_due()
    name, mrn = patient.name, patient.mrn
    with django_capture_on_commit_callbacks(execute=True):
        erase(patient, admin_user)
    deletions = LogEntry.objects.filter(action=LogEntry.Action.DELETE)
    assert {e.content_type.model for e in deletions} >= {"patient", "study", "prediction", "report"}
    trail = json.dumps([[e.object_repr, e.changes, e.changes_text, e.additional_data] for e in LogEntry.objects.all()])
    assert name not in trail and mrn not in trail
    assert verify().ok


def test_it_waits_for_a_second_administrator_under_the_two_person_rule(settings, admin_user, second_admin, patient,
                                                                      django_capture_on_commit_callbacks):
    settings.PNEUMOWEB_ERASURE_TWO_PERSON = True
    erasure = erase(patient, admin_user)
    assert erasure.status == Erasure.Status.REQUESTED and Patient.objects.filter(pk=patient.pk).exists()
    with pytest.raises(ErasureRefused, match="second administrator"):
        approve(erasure, by=admin_user)
    with pytest.raises(ErasureRefused, match="already waiting"):
        erase(patient, second_admin)
    with django_capture_on_commit_callbacks(execute=True):
        approve(erasure, by=second_admin)
    erasure.refresh_from_db()
    assert erasure.status == Erasure.Status.DONE and erasure.approved_by == second_admin
    assert not Patient.objects.filter(pk=patient.pk).exists()


def test_it_erases_the_patients_pacs_records_and_held_pixels(admin_user, patient, django_capture_on_commit_callbacks):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    PacsPatient.objects.create(dicom_patient_id="PID-1", patient=patient)
    imaging = ImagingStudy.objects.create(study_instance_uid="1.2.3", patient=patient)
    instance = Instance.objects.create(imaging_study=imaging, sop_instance_uid="1.2.3.4", received_from="ORTHANC",
                                       outcome=Instance.Outcome.SUBMITTED, study=prediction.study)
    held = Instance(imaging_study=imaging, sop_instance_uid="1.2.3.5", received_from="ORTHANC",
                    outcome=Instance.Outcome.WAITING)
    held.pixels.save("held.png", ContentFile(b"\x89PNG held"), save=False)
    held.save()
    held_path = Path(held.pixels.path)
    destination = Destination.objects.create(name="pacs", kind=Destination.Kind.DICOMWEB, url="http://127.0.0.1:9/")
    Export.objects.create(prediction=prediction, instance=instance, destination=destination, kind=Export.Kind.SR)
    with django_capture_on_commit_callbacks(execute=True):
        erase(patient, admin_user)
    assert not Instance.objects.exists() and not ImagingStudy.objects.exists() and not PacsPatient.objects.exists()
    assert not Export.objects.exists() and Destination.objects.exists()
    assert not held_path.exists()


def test_it_answers_404_to_an_upload_for_a_patient_erased_meanwhile(admin_user, clinician, xray_upload,
                                                                   django_capture_on_commit_callbacks):
    from django.http import Http404

    from diagnosis.images import check_upload

    patient = PatientFactory(owner=clinician)
    stale = Patient.objects.get(pk=patient.pk)
    with django_capture_on_commit_callbacks(execute=True):
        erase(patient, admin_user)
    with pytest.raises(Http404):
        submit_study(checked_image=check_upload(xray_upload()), age_years=None, uploaded_by=clinician, patient=stale)
    assert not Study.objects.exists()
    assert not any(p.is_file() for p in Path(settings.MEDIA_ROOT).rglob("*"))


def test_it_offers_erasure_in_the_admin_with_a_reason(admin_client, patient, django_capture_on_commit_callbacks):
    changelist = reverse("admin:diagnosis_patient_changelist")
    confirm = admin_client.post(changelist, {"action": "erase_data", "_selected_action": [patient.pk]})
    assert confirm.status_code == 200
    assert patient_pseudonym(patient.pk) in confirm.content.decode() and "Reason" in confirm.content.decode()
    no_reason = admin_client.post(changelist, {"action": "erase_data", "_selected_action": [patient.pk],
                                               "confirm": "Erase", "reason": ""})
    assert "Give the reason" in no_reason.content.decode()
    assert Patient.objects.filter(pk=patient.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(changelist, {"action": "erase_data", "_selected_action": [patient.pk],
                                              "confirm": "Erase", "reason": "court order 7"}, follow=True)
    assert "erased" in done.content.decode()
    assert not Patient.objects.filter(pk=patient.pk).exists()
    assert admin_client.get(reverse("admin:diagnosis_erasure_changelist")).status_code == 200


def test_it_offers_no_erasure_or_delete_to_reviewers(client, patient):
    reviewer = UserFactory(role="reviewer")
    assert client.login(username=reviewer.username, password=PASSWORD)
    verify_session(client, reviewer)
    changelist = client.get(reverse("admin:diagnosis_patient_changelist"))
    assert changelist.status_code == 200
    page = changelist.content.decode()
    assert "erase_data" not in page and "delete_selected" not in page
    client.post(reverse("admin:diagnosis_patient_changelist"), {
        "action": "erase_data", "_selected_action": [patient.pk], "confirm": "Erase", "reason": "x"})
    assert Patient.objects.filter(pk=patient.pk).exists()


def test_it_forgets_kept_answers_that_show_the_erased_predictions(admin_user, clinician, xray_upload,
                                                                 django_capture_on_commit_callbacks):
    from diagnosis.models import IdempotentRequest

    api = api_client_for(clinician)
    answer = api.post(reverse("api:predict"), {"image": xray_upload(), "patient_mrn": "MRN-KEY", "patient_name": "K"},
                      format="multipart", HTTP_IDEMPOTENCY_KEY="key-1")
    assert answer.status_code == 202 and IdempotentRequest.objects.count() == 1
    patient = Patient.objects.get(mrn="MRN-KEY")
    Prediction.objects.update(status=Prediction.Status.SUCCEEDED)  # its job would have run on commit
    with django_capture_on_commit_callbacks(execute=True):
        erase(patient, admin_user)
    assert IdempotentRequest.objects.count() == 0


def test_a_refused_erasure_leaves_no_request_behind(admin_user, patient, monkeypatch):
    from diagnosis import erasure as erasure_module

    answers = iter([False, True])  # a job queued between the first check and the erasure itself
    monkeypatch.setattr(erasure_module, "_running", lambda patient: next(answers))
    with pytest.raises(ErasureRefused, match="still being assessed"):
        erase(patient, admin_user)
    assert not Erasure.objects.exists() and Patient.objects.filter(pk=patient.pk).exists()


def test_it_renames_the_patient_in_djangos_admin_history(admin_client, admin_user, patient,
                                                       django_capture_on_commit_callbacks):
    from django.contrib.admin.models import CHANGE
    from django.contrib.admin.models import LogEntry as AdminLogEntry
    from django.contrib.contenttypes.models import ContentType

    AdminLogEntry.objects.log_actions(admin_user.pk, [patient], CHANGE, change_message="[]", single_object=True)
    assert AdminLogEntry.objects.get().object_repr == str(patient)
    with django_capture_on_commit_callbacks(execute=True):
        erase(patient, admin_user)
    entry = AdminLogEntry.objects.get(content_type=ContentType.objects.get_for_model(Patient))
    assert entry.object_repr == f"patient {patient.pk} (erased)"
    assert patient.name not in admin_client.get(reverse("admin:index")).content.decode()
