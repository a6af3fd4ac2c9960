"""Receiving instances (pacs/ingest.py) and closing quiet studies (pacs/grouping.py), in process."""

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group
from django.utils import timezone

from diagnosis.models import Prediction, Study
from diagnosis.permissions import visible_patients
from pacs.grouping import close_quiet_studies
from pacs.ingest import Unacceptable, receive
from pacs.models import ImagingStudy, Instance, PacsPatient
from tests.base import integrity_failures, tamper_with
from tests.dicom_files import CT_IMAGE, chest

pytestmark = pytest.mark.django_db
LATER = timezone.now() + timezone.timedelta(hours=1)


def test_it_stores_a_frontal_chest_film_waiting_for_its_study_to_go_quiet(settings):
    received = receive(chest(patient_id="P-1", issuer="HOSP", age="034Y"), received_from="C-STORE from ORTHANC")
    instance = received.instance
    assert not received.repeat
    assert instance.outcome == Instance.Outcome.WAITING
    assert instance.age_years == Decimal("34")
    assert instance.pixels.name.startswith("pacs/") and instance.pixels.storage.exists(instance.pixels.name)
    assert "PixelData" not in str(instance.header) and instance.header["00100020"]["Value"] == ["P-1"]
    patient = instance.imaging_study.patient
    assert patient.owner.username == settings.PNEUMOWEB_PACS_ACCOUNT
    assert patient.mrn == "P-1 (HOSP)" and patient.name == "Jane Doe"
    assert PacsPatient.objects.get(patient=patient).issuer == "HOSP"
    assert not Prediction.objects.exists()  # nothing runs before the study goes quiet


def test_it_takes_the_age_from_the_birth_date_and_study_date_when_patient_age_is_missing():
    instance = receive(chest(age="", birth_date="19900601", study_date="20260601"), received_from="x").instance
    assert instance.age_years == Decimal("36.0")


def test_it_receives_each_sop_instance_once():
    dataset = chest()
    first = receive(dataset, received_from="x")
    again = receive(dataset, received_from="x")
    assert again.repeat and again.instance.pk == first.instance.pk
    assert Instance.objects.count() == 1


@pytest.mark.parametrize(("tags", "reason"), [
    ({"modality": "CT", "sop_class": CT_IMAGE}, "modality CT is not a radiograph"),
    ({"view": "LL"}, "view LL is not frontal"),
    ({"body_part": "KNEE"}, "body part KNEE is not the chest"),
    ({"sop_class": "1.2.840.10008.5.1.4.1.1.1.1.1"}, "FOR PROCESSING"),
])
def test_it_acknowledges_and_skips_what_is_not_a_frontal_chest_radiograph(tags, reason):
    instance = receive(chest(**tags), received_from="x").instance
    assert instance.outcome == Instance.Outcome.SKIPPED
    assert reason in instance.skip_reason
    assert not instance.pixels


def test_it_refuses_an_instance_without_uids():
    dataset = chest()
    del dataset.SOPInstanceUID
    with pytest.raises(Unacceptable):
        receive(dataset, received_from="x")
    assert not Instance.objects.exists()


def test_it_submits_only_the_frontal_films_once_the_study_is_quiet(django_capture_on_commit_callbacks):
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    receive(chest(study_uid=study_uid), received_from="x")
    receive(chest(study_uid=study_uid, modality="CT", sop_class=CT_IMAGE), received_from="x")
    receive(chest(study_uid=study_uid, view="LATERAL"), received_from="x")
    assert close_quiet_studies() == 0  # not quiet yet
    with django_capture_on_commit_callbacks(execute=True):
        assert close_quiet_studies(now=LATER) == 1
    assert close_quiet_studies(now=LATER) == 0  # claimed once
    study = Study.objects.get()
    assert study.age_years == Decimal("34") and study.view == "PA"
    assert study.notes == "Received over DICOM: x."  # who sent it; when and what was skipped:
    assert any("not assessed: CT" in note and "LATERAL" in note for note in study.source_notes)
    assert Prediction.objects.filter(study=study).count() == 1
    submitted = Instance.objects.get(study=study)
    assert submitted.outcome == Instance.Outcome.SUBMITTED and not submitted.pixels
    assert ImagingStudy.objects.get().assessed_at is not None


def test_it_reopens_a_study_when_a_new_film_arrives_after_assessment():
    study_uid = "1.2.826.0.1.3680043.8.498.2"
    receive(chest(study_uid=study_uid), received_from="x")
    close_quiet_studies(now=LATER)
    receive(chest(study_uid=study_uid, xray="adult-normal-1.jpeg"), received_from="x")
    assert close_quiet_studies(now=LATER + timezone.timedelta(hours=1)) == 1
    assert Study.objects.count() == 2 and Prediction.objects.count() == 2


def test_it_shows_pacs_patients_to_the_readers_group_only(clinician, other_clinician, settings):
    patient = receive(chest(), received_from="x").instance.imaging_study.patient
    clinician.groups.add(Group.objects.create(name=settings.PNEUMOWEB_PACS_READERS_GROUP))
    assert list(visible_patients(clinician)) == [patient]
    assert not visible_patients(other_clinician).exists()


def test_it_records_who_sent_what_and_what_was_skipped_in_the_audit_trail():
    instance = receive(chest(view="LL"), received_from="C-STORE from ORTHANC at 10.0.0.5").instance
    entry = LogEntry.objects.get_for_object(instance).get()
    assert entry.action == LogEntry.Action.CREATE
    assert entry.changes_dict["received_from"][1] == "C-STORE from ORTHANC at 10.0.0.5"
    assert "not frontal" in entry.changes_dict["skip_reason"][1]
    assert "header" not in entry.changes_dict


def test_it_records_the_sha256_of_each_held_image():
    instance = receive(chest(), received_from="x").instance
    with instance.pixels.open("rb") as fh:
        assert instance.pixels_sha256 == hashlib.sha256(fh.read()).hexdigest()


def test_it_submits_no_held_image_that_is_not_the_one_received(django_capture_on_commit_callbacks, caplog):
    study_uid = "1.2.826.0.1.3680043.8.498.3"
    changed = receive(chest(study_uid=study_uid), received_from="x").instance
    good = receive(chest(study_uid=study_uid, xray="adult-normal-1.jpeg"), received_from="x").instance
    tamper_with(changed.pixels)
    with django_capture_on_commit_callbacks(execute=True):
        assert close_quiet_studies(now=LATER) == 1  # the good one goes on
    changed.refresh_from_db()
    assert changed.outcome == Instance.Outcome.SKIPPED and "failed its integrity check" in changed.skip_reason
    assert changed.study is None and changed.pixels  # kept for an administrator to look at
    assert Instance.objects.get(pk=good.pk).outcome == Instance.Outcome.SUBMITTED
    assert Study.objects.count() == 1
    assert any(r.levelname == "ERROR" and changed.pixels.name in r.getMessage() for r in caplog.records)
    [entry] = integrity_failures()
    assert (entry.content_type.model, entry.object_pk, entry.additional_data["field"]) == (
        "instance", str(changed.pk), "pixels")


def test_it_skips_a_held_image_that_is_missing_and_goes_on(django_capture_on_commit_callbacks):
    study_uid = "1.2.826.0.1.3680043.8.498.4"
    lost = receive(chest(study_uid=study_uid), received_from="x").instance
    good = receive(chest(study_uid=study_uid, xray="adult-normal-1.jpeg"), received_from="x").instance
    Path(lost.pixels.path).unlink()
    with django_capture_on_commit_callbacks(execute=True):
        assert close_quiet_studies(now=LATER) == 1
    lost.refresh_from_db()
    assert lost.outcome == Instance.Outcome.SKIPPED and "missing" in lost.skip_reason
    assert Instance.objects.get(pk=good.pk).outcome == Instance.Outcome.SUBMITTED


def test_one_study_that_fails_does_not_stop_the_others(monkeypatch, django_capture_on_commit_callbacks):
    from pacs import grouping

    first = receive(chest(study_uid="1.2.826.0.1.3680043.8.498.5"), received_from="x").instance
    receive(chest(study_uid="1.2.826.0.1.3680043.8.498.6", xray="adult-normal-1.jpeg"), received_from="x")
    real = grouping.submit_waiting

    def fails_for_the_first(pk, **kwargs):
        if pk == first.imaging_study_id:
            raise RuntimeError("disk on fire")
        return real(pk, **kwargs)

    monkeypatch.setattr(grouping, "submit_waiting", fails_for_the_first)
    with django_capture_on_commit_callbacks(execute=True):
        assert close_quiet_studies(now=LATER) == 1
    assert Instance.objects.get(pk=first.pk).outcome == Instance.Outcome.WAITING  # tried again next round
