"""The audit trail names patients by keyed pseudonyms and masks personal values, from the moment an entry is written."""

import json

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

from audit.pseudonyms import HIDDEN, mask, masked_query, patient_pseudonym, pseudonym
from diagnosis.models import Patient

from ..base import api_client_for
from ..factories import PredictionFactory, StudyFactory, xray_bytes

pytestmark = pytest.mark.django_db

NAME, MRN, BIRTH = "Zebedee Quintrell", "MRN-SECRET-77", "2019-03-04"


def trail_text():
    """Everything the trail holds, as one string."""
    return json.dumps([
        {"repr": e.object_repr, "changes": e.changes, "text": e.changes_text, "data": e.additional_data,
         "serialized": e.serialized_data}
        for e in LogEntry.objects.all()
    ], default=str)


def test_it_keeps_names_mrns_and_birth_dates_out_of_every_entry(clinician, logged_in, reviewer):
    api = api_client_for(clinician)
    api.post(reverse("api:patient-list"), {"mrn": MRN, "name": NAME, "date_of_birth": BIRTH}, format="json")
    patient = Patient.objects.get(mrn=MRN)
    api.patch(reverse("api:patient-detail", args=[patient.pk]), {"name": NAME + " Jr"}, format="json")
    upload = api.post(reverse("api:predict"), {"patient": patient.pk,
                                               "image": _jpeg(), "notes": f"{NAME} coughing"}, format="multipart")
    assert upload.status_code == 202, upload.content
    logged_in.get(reverse("patient_detail", args=[patient.pk]))
    prediction = patient.studies.get().predictions.get()
    logged_in.get(reverse("prediction_detail", args=[prediction.pk]))
    text = trail_text()
    assert LogEntry.objects.count() >= 5
    for secret in (NAME, MRN, BIRTH, "Quintrell", "coughing"):
        assert secret not in text


def test_it_names_a_patient_and_their_studies_by_the_same_pseudonym(patient):
    study = StudyFactory(patient=patient)
    names = set(LogEntry.objects.filter(content_type__model__in=["patient", "study"]).values_list("object_repr",
                                                                                                 flat=True))
    assert names == {f"Patient {patient_pseudonym(patient.pk)}",
                     f"Study {study.pk} of patient {patient_pseudonym(patient.pk)}"}


def test_it_says_which_personal_field_changed_without_its_value(patient):
    old_name = patient.name
    patient.name = "Someone Else"
    patient.save()
    entry = LogEntry.objects.filter(content_type__model="patient", action=LogEntry.Action.UPDATE).get()
    assert entry.changes_dict["name"] == [mask(old_name), mask("Someone Else")]
    assert old_name not in json.dumps(entry.changes)


def test_it_names_accesses_by_pseudonym_too(logged_in, patient):
    logged_in.get(reverse("patient_detail", args=[patient.pk]))
    entry = LogEntry.objects.get(action=LogEntry.Action.ACCESS, content_type__model="patient")
    assert entry.object_repr == f"Patient {patient_pseudonym(patient.pk)}"


def test_it_masks_free_text_searches_in_recorded_exports():
    from urllib.parse import parse_qs

    assert parse_qs(masked_query("q=Quintrell&status=queued")) == {"q": [HIDDEN], "status": ["queued"]}
    assert "Quintrell" not in masked_query("q=Quintrell")


def test_it_records_no_value_not_even_a_hash_of_it():
    assert mask("MRN-SECRET-77") == mask("another MRN") == HIDDEN


def test_it_rewrites_entries_written_before_pseudonyms(patient):
    from django.apps import apps

    from audit.pseudonyms import pseudonymise_entries

    entry = LogEntry.objects.get(content_type__model="patient")
    LogEntry.objects.filter(pk=entry.pk).update(
        object_repr=f"{patient.name} ({patient.mrn})",
        changes={"name": ["None", patient.name], "mrn": ["None", patient.mrn], "sex": ["None", "F"]})
    assert pseudonymise_entries(apps, "diagnosis", "patient", mask_fields={"name", "mrn"},
                                name=lambda pk: f"Patient {patient_pseudonym(pk)}", drop_fields={"sex"}) == 1
    entry.refresh_from_db()
    assert entry.object_repr == f"Patient {patient_pseudonym(patient.pk)}"
    assert entry.changes == {"name": ["None", HIDDEN], "mrn": ["None", HIDDEN]}


def test_its_pseudonyms_are_keyed(settings):
    first = pseudonym("patient", 7)
    assert first.startswith("P-") and len(first) == 14
    assert pseudonym("patient", 7) == first and pseudonym("patient", 8) != first
    settings.PNEUMOWEB_PSEUDONYM_KEY = "another-key"
    assert pseudonym("patient", 7) != first
    assert mask("") == "" and mask("None") == "None"


def test_it_keeps_prediction_review_comments_out(reviewer, patient):
    prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    api_client_for(reviewer).post(reverse("api:prediction-review", args=[prediction.pk]),
                                  {"verdict": "disagree", "label": "NORMAL", "comment": f"spoke to {NAME}"})
    assert NAME not in trail_text()


def _jpeg():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("film.jpeg", xray_bytes(), content_type="image/jpeg")
