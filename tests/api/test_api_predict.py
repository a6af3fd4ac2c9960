import datetime
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from diagnosis.models import Patient, Prediction, Study

from ..base import throttle_rates
from ..factories import xray_bytes

pytestmark = pytest.mark.django_db

URL = reverse("api:predict")


def media_files(settings):
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_saved(settings):
    assert Study.objects.count() == 0
    assert Prediction.objects.count() == 0
    assert media_files(settings) == []


def png_bytes(width, height, mode="L"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_it_accepts_an_xray_and_returns_202_with_a_url_to_poll(
    api, patient, xray_upload, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(URL, {"image": xray_upload(), "age": "3.5", "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"] == body["url"]
    assert body["url"].endswith(f"/api/predictions/{body['id']}/")
    assert body["patient"] == patient.pk
    assert len(callbacks) == 1
    prediction = Prediction.objects.get(pk=body["id"])
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert 0.0 <= prediction.probability <= 1.0
    assert prediction.label in {"PNEUMONIA", "NORMAL"}
    assert len(prediction.model_sha256) == 64


def test_it_stores_the_image_under_a_random_name_and_keeps_the_original_name(api, patient, xray_upload):
    response = api.post(
        URL, {"image": xray_upload(filename="../../etc/passwd.jpg"), "age": "4", "patient": patient.pk}, format="multipart"
    )
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert study.original_filename == "passwd.jpg" or study.original_filename.endswith("passwd.jpg")
    assert "passwd" not in study.image.name
    assert study.image.name.startswith("studies/") and study.image.name.endswith(".jpg")
    assert Path(study.image.path).read_bytes() == xray_bytes()
    assert (study.image_width, study.image_height) == (224, 224)
    assert len(study.image_sha256) == 64


def test_it_enqueues_only_after_commit(api, patient, xray_upload, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(URL, {"image": xray_upload(), "age": "2", "patient": patient.pk}, format="multipart")
    assert response.status_code == 202
    assert len(callbacks) == 1
    assert Prediction.objects.get().status == Prediction.Status.QUEUED


def test_it_creates_a_patient_from_patient_fields(api, clinician, xray_upload):
    data = {"image": xray_upload(), "age": "45.25", "patient_mrn": "NEW-1", "patient_name": "Ada Byron", "patient_sex": "F"}
    response = api.post(URL, data, format="multipart")
    assert response.status_code == 202, response.content
    patient = Patient.objects.get(mrn="NEW-1")
    assert patient.owner == clinician and patient.name == "Ada Byron" and patient.sex == "F"
    assert str(Study.objects.get().age_years) == "45.25"


def test_it_reuses_an_existing_patient_with_the_same_mrn(api, patient, xray_upload):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient_mrn": patient.mrn}, format="multipart")
    assert response.status_code == 202, response.content
    assert Patient.objects.count() == 1
    assert Study.objects.get().patient == patient


def test_it_accepts_png(api, patient, xray_upload):
    data = png_bytes(256, 256)
    response = api.post(URL, {"image": xray_upload(data=data, filename="x.png"), "age": "1", "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    assert Study.objects.get().image.name.endswith(".png")


def test_it_requires_authentication(client, patient, xray_upload):
    response = client.post(URL, {"image": xray_upload(), "age": "3", "patient": patient.pk})
    assert response.status_code in (401, 403)
    assert Study.objects.count() == 0


def test_it_rejects_a_bad_token(api, patient, xray_upload):
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 401


BAD_AGES = [  # an empty age is no age: accepted (test_it_runs_a_study_without_an_age_…)
    ("-1", "age"),
    ("120.01", "age"),
    ("121", "age"),
    ("three", "age"),
    ("NaN", "age"),
    ("1e9", "age"),
]


@pytest.mark.parametrize("age,field", BAD_AGES)
def test_it_rejects_bad_ages(api, patient, xray_upload, settings, age, field):
    response = api.post(URL, {"image": xray_upload(), "age": age, "patient": patient.pk}, format="multipart")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert_nothing_saved(settings)


def test_it_runs_a_study_without_an_age_at_the_most_sensitive_point_with_a_warning(
    api, patient, xray_upload, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, {"image": xray_upload(), "age": "", "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    prediction = Prediction.objects.get()  # eager jobs in tests: already run
    assert prediction.study.age_years is None and prediction.status == "succeeded"
    assert any("No age given" in w for w in prediction.warnings)
    assert api.get(response["Location"]).json()["study"]["age_years"] is None


def test_it_rejects_a_missing_image(api, patient, settings):
    response = api.post(URL, {"age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "image" in response.json()
    assert_nothing_saved(settings)


def test_it_rejects_non_image_bytes_with_an_image_extension(api, patient, xray_upload, settings):
    upload = xray_upload(data=b"%PDF-1.4 definitely not an image" * 10, filename="scan.jpg")
    response = api.post(URL, {"image": upload, "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "JPEG, PNG or DICOM" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_rejects_an_empty_file(api, patient, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(data=b"", filename="x.jpg"), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "image" in response.json()
    assert_nothing_saved(settings)


def test_it_rejects_a_truncated_image(api, patient, xray_upload, settings):
    data = xray_bytes()
    response = api.post(URL, {"image": xray_upload(data=data[: len(data) // 2]), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "truncated" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_rejects_an_image_over_the_byte_limit(api, patient, xray_upload, settings):
    settings.PNEUMOWEB_MAX_UPLOAD_BYTES = 1000
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "limit" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_rejects_an_image_over_the_pixel_limit(api, patient, xray_upload, settings):
    settings.PNEUMOWEB_MAX_IMAGE_PIXELS = 100_000
    data = png_bytes(400, 400)
    response = api.post(URL, {"image": xray_upload(data=data, filename="big.png"), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "pixels" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_refuses_a_decompression_bomb_without_decoding_it(api, patient, xray_upload, settings):
    # 30000×30000 blank PNG compresses to well under 1 MB but would need ~900 MB decoded.
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000), 0).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < settings.PNEUMOWEB_MAX_UPLOAD_BYTES
    response = api.post(URL, {"image": xray_upload(data=buffer.getvalue(), filename="bomb.png"), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "pixels" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_rejects_a_tiny_image(api, patient, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(data=png_bytes(8, 8), filename="t.png"), "age": "3", "patient": patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "at least" in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_rejects_an_unknown_patient_id(api, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient": 999999}, format="multipart")
    assert response.status_code == 400
    assert "patient" in response.json()
    assert_nothing_saved(settings)


def test_it_rejects_another_clinicians_patient_like_an_unknown_one(api, foreign_patient, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient": foreign_patient.pk}, format="multipart")
    assert response.status_code == 400
    assert "does not exist" in response.json()["patient"][0]
    assert_nothing_saved(settings)


def test_it_rejects_a_non_numeric_patient_id(api, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient": "abc"}, format="multipart")
    assert response.status_code == 400
    assert "patient" in response.json()
    assert_nothing_saved(settings)


def test_it_requires_a_patient(api, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3"}, format="multipart")
    assert response.status_code == 400
    assert "patient" in response.json()
    assert_nothing_saved(settings)


def test_it_requires_a_name_for_a_new_patient(api, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient_mrn": "X9"}, format="multipart")
    assert response.status_code == 400
    assert "patient_name" in response.json()
    assert Patient.objects.count() == 0
    assert_nothing_saved(settings)


def test_it_rejects_patient_id_and_fields_together(api, patient, xray_upload, settings):
    data = {"image": xray_upload(), "age": "3", "patient": patient.pk, "patient_mrn": "OTHER", "patient_name": "X"}
    response = api.post(URL, data, format="multipart")
    assert response.status_code == 400
    assert_nothing_saved(settings)


def test_it_saves_nothing_when_the_database_write_fails(api, patient, xray_upload, settings, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Prediction.objects, "create", boom)
    with pytest.raises(RuntimeError):
        api.post(URL, {"image": xray_upload(), "age": "3", "patient": patient.pk}, format="multipart")
    assert_nothing_saved(settings)


def test_it_rejects_json_bodies(api, patient):
    response = api.post(URL, {"age": "3", "patient": patient.pk}, format="json")
    assert response.status_code == 415


def test_it_throttles_predict_requests(api, patient, xray_upload):
    with throttle_rates(predict="2/min"):
        codes = [
            api.post(URL, {"image": xray_upload(), "age": "3", "patient": patient.pk}, format="multipart").status_code
            for _ in range(3)
        ]
    assert codes == [202, 202, 429]


# --- DICOM --------------------------------------------------------------------------------


def dicom_upload(data, name="study.dcm"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, "application/dicom")


def test_it_takes_the_age_from_a_dicom_and_stores_a_de_identified_png(api, patient, settings):
    from ..dicoms import IDENTIFYING, make_dicom

    response = api.post(URL, {"image": dicom_upload(make_dicom(age="004Y")), "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert study.age_years == 4 and study.source_format == "DICOM" and study.view == "PA"
    assert any("PatientAge" in note for note in study.source_notes)
    stored = Path(study.image.path).read_bytes()
    assert stored.startswith(b"\x89PNG") and study.image.name.endswith(".png")
    for value in IDENTIFYING.values():
        assert value.encode() not in stored
    assert [p.name for p in media_files(settings)] == [Path(study.image.name).name]


def test_it_keeps_a_typed_age_over_the_dicom_age_and_says_so(api, patient):
    from ..dicoms import make_dicom

    response = api.post(URL, {"image": dicom_upload(make_dicom(age="045Y")), "age": "4", "patient": patient.pk},
                        format="multipart")
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert study.age_years == 4
    assert any("differs from the DICOM PatientAge (45.0 years)" in note for note in study.source_notes)
    detail = api.get(response.json()["url"]).json()
    assert detail["study"]["source_format"] == "DICOM" and detail["study"]["source_notes"] == study.source_notes


def test_it_records_a_lateral_dicom_as_lateral(api, patient):
    from ..dicoms import make_dicom

    response = api.post(URL, {"image": dicom_upload(make_dicom(view="LL")), "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    assert Study.objects.get().view == "LAT"


def test_it_accepts_a_dicom_without_an_age_and_notes_it(api, patient, settings):
    from ..dicoms import make_dicom

    response = api.post(URL, {"image": dicom_upload(make_dicom(age=None)), "patient": patient.pk}, format="multipart")
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert study.age_years is None and any(n.startswith("No age") for n in study.source_notes)


def test_the_birth_date_on_record_wins_over_a_dicom_patient_age(api, clinician):
    from ..dicoms import edited, make_dicom
    from ..factories import PatientFactory

    child = PatientFactory(owner=clinician, date_of_birth=datetime.date(2020, 1, 1))
    dicom = edited(make_dicom(), PatientAge="045Y", StudyDate="20240101")
    response = api.post(URL, {"image": dicom_upload(dicom), "patient": child.pk}, format="multipart")
    assert response.status_code == 202, response.content
    study = Study.objects.get()
    assert study.age_years == Decimal("4.00")  # on the DICOM StudyDate, from the record's birth date
    assert any("contradicts the birth date on record" in n for n in study.source_notes)


def test_it_refuses_a_typed_age_that_contradicts_a_new_patients_birth_date(api, xray_upload, settings):
    born = (timezone.localdate() - datetime.timedelta(days=10 * 366)).isoformat()
    response = api.post(URL, {"image": xray_upload(), "age": "40", "patient_mrn": "DOB-1", "patient_name": "Kid",
                              "patient_date_of_birth": born}, format="multipart")
    assert response.status_code == 400 and "contradicts the birth date" in response.json()["age"][0]
    assert_nothing_saved(settings)


@pytest.mark.parametrize("name, message", [("CT_small.dcm", "a CT scan, not a radiograph"),
                                           ("MR_small.dcm", "an MR scan, not a radiograph")])
def test_it_rejects_ct_and_mr_dicoms(api, patient, settings, name, message):
    from ..dicoms import bundled

    response = api.post(URL, {"image": dicom_upload(bundled(name)), "age": "4", "patient": patient.pk},
                        format="multipart")
    assert response.status_code == 400
    assert message in response.json()["image"][0]
    assert_nothing_saved(settings)


def test_it_answers_every_malformed_dicom_with_a_400_or_a_202_and_never_half_saves(api, patient, settings):
    from pathlib import Path

    from diagnosis.models import Study

    from ..dicoms import mutations

    answers = {}
    for name, data in mutations():
        before = Study.objects.count()
        response = api.post(URL, {"image": dicom_upload(data), "patient": patient.pk, "age": "40"}, format="multipart")
        answers[name] = response.status_code
        assert response.status_code in (202, 400), (name, response.content)
        if response.status_code == 400:
            assert response.json()["image"], name
            assert Study.objects.count() == before, name
    stored = [p for p in (Path(settings.MEDIA_ROOT) / "studies").rglob("*") if p.is_file()]
    assert len(stored) == Study.objects.count()  # no file without a row
    assert answers["WindowWidth='0'"] == 202 and answers["NumberOfFrames='abc'"] == 400


def test_it_stores_no_dicom_age_over_120_years(api, patient):
    from ..dicoms import edited, make_dicom

    response = api.post(URL, {"image": dicom_upload(edited(make_dicom(), PatientAge="150Y")), "patient": patient.pk},
                        format="multipart")
    assert response.status_code == 202, response.content
    study = Study.objects.get()  # the invalid age was ignored: the study has none
    assert study.age_years is None and any("150Y" in n for n in study.source_notes)


def test_it_refuses_an_mrn_given_with_another_patients_name(api, patient, xray_upload, settings):
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient_mrn": patient.mrn,
                              "patient_name": "Other Name"}, format="multipart")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert patient.mrn in detail and patient.name in detail and '"Other Name"' in detail
    assert_nothing_saved(settings)


def test_it_refuses_an_mrn_given_with_another_birth_date(api, clinician, xray_upload, settings):
    from ..factories import PatientFactory

    patient = PatientFactory(owner=clinician, date_of_birth="2020-01-02")
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient_mrn": patient.mrn,
                              "patient_date_of_birth": "2021-05-06"}, format="multipart")
    assert response.status_code == 409 and "2021-05-06" in response.json()["detail"]
    assert_nothing_saved(settings)


def test_it_attaches_when_the_name_differs_only_in_case_and_spacing(api, patient, xray_upload):
    name = "  " + patient.name.upper().replace(" ", "   ") + " "
    response = api.post(URL, {"image": xray_upload(), "age": "3", "patient_mrn": patient.mrn, "patient_name": name},
                        format="multipart")
    assert response.status_code == 202, response.content
    assert Study.objects.get().patient == patient


def test_a_record_created_meanwhile_with_another_name_is_caught_at_the_save(clinician, settings):
    # The race the request's validation cannot see: the record appears between the check and the save.
    from diagnosis.services import PatientMismatch, get_or_create_patient

    from ..factories import PatientFactory

    PatientFactory(owner=clinician, mrn="RACE-1", name="First Writer")
    with pytest.raises(PatientMismatch, match="First Writer"):
        get_or_create_patient(owner=clinician, mrn="RACE-1", name="Second Writer")
    assert get_or_create_patient(owner=clinician, mrn="RACE-1", name="first writer").name == "First Writer"
