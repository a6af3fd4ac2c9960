import io
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from diagnosis.models import Prediction, Study

from ..base import verify_session
from ..factories import PASSWORD, xray_bytes

pytestmark = pytest.mark.django_db

URL = reverse("upload")


def assert_nothing_saved(settings):
    assert Study.objects.count() == 0 and Prediction.objects.count() == 0
    root = Path(settings.MEDIA_ROOT)
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def post(client, patient, xray_upload, /, **changes):
    data = {"patient": patient.pk, "age": "3", "image": xray_upload(), "view": "PA", **changes}
    return client.post(URL, {k: v for k, v in data.items() if v is not None})


def image_errors(response):
    return " ".join(response.context["form"].errors.get("image", []))


def test_it_requires_login(client, patient, xray_upload, settings):
    assert client.get(URL)["Location"].startswith(reverse("login"))
    response = post(client, patient, xray_upload)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert_nothing_saved(settings)


def test_it_shows_the_form(logged_in, patient, foreign_patient):
    response = logged_in.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html and "csrfmiddlewaretoken" in html
    for field in ("id_patient", "id_age", "id_image", "id_view", "id_notes"):
        assert f'id="{field}"' in html, field
    assert 'data-testid="upload-submit"' in html
    assert 'accept="image/jpeg,image/png,application/dicom,.dcm"' in html
    assert '<img id="preview"' in html and "/static/js/upload-preview.js" in html
    # Only the clinician's own patients can be chosen.
    assert f'<option value="{patient.pk}">' in html
    assert f'<option value="{foreign_patient.pk}">' not in html and foreign_patient.name not in html


def test_it_preselects_the_patient_from_the_query(logged_in, patient):
    response = logged_in.get(URL, {"patient": patient.pk})
    assert response.context["form"].initial["patient"] == patient
    assert f'<option value="{patient.pk}" selected>' in response.content.decode()


@pytest.mark.parametrize("value", ["abc", "", "-1", "99999999999999999999999", "1.5"])
def test_it_ignores_a_bad_patient_in_the_query(logged_in, patient, value):
    response = logged_in.get(URL, {"patient": value})
    assert response.status_code == 200
    assert response.context["form"].initial.get("patient") is None


def test_it_does_not_preselect_another_clinicians_patient(logged_in, foreign_patient):
    response = logged_in.get(URL, {"patient": foreign_patient.pk})
    assert response.context["form"].initial.get("patient") is None
    assert foreign_patient.name not in response.content.decode()


def test_it_points_to_patient_creation_when_there_are_no_patients(logged_in):
    html = logged_in.get(URL).content.decode()
    assert "You have no patients yet" in html and reverse("patient_create") in html


def test_it_uploads_and_redirects_to_the_result(logged_in, patient, xray_upload, django_capture_on_commit_callbacks):
    upload = xray_upload("pneumonia-1.jpeg", filename="chest of Mrs X.jpeg")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = logged_in.post(
            URL, {"patient": patient.pk, "age": "2.5", "image": upload, "view": "AP", "notes": "Cough, fever."}
        )
    assert len(callbacks) == 1  # the job is enqueued once the upload is committed
    prediction = Prediction.objects.get()
    assert response.status_code == 302 and response["Location"] == prediction.get_absolute_url()
    assert prediction.status == "succeeded" and prediction.label in ("PNEUMONIA", "NORMAL")
    study = prediction.study
    assert study.patient == patient and study.uploaded_by == patient.owner
    assert study.view == "AP" and str(study.age_years) == "2.50" and study.notes == "Cough, fever."
    assert (study.image_width, study.image_height) == (224, 224)
    # The file is stored under a random name; the original name is only data.
    assert study.original_filename == "chest of Mrs X.jpeg"
    assert study.image.name.startswith("studies/") and study.image.name.endswith(".jpg") and "Mrs" not in study.image.name
    assert Path(study.image.path).read_bytes() == xray_bytes("pneumonia-1.jpeg")
    page = logged_in.get(response["Location"]).content.decode()
    assert f'data-testid="prediction-label" id="label" class="label-{prediction.label.lower()}">{prediction.label}<' in page


def test_it_accepts_a_png(logged_in, patient, xray_upload):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(xray_bytes())).save(buffer, format="PNG")
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=buffer.getvalue(), filename="x.png", content_type="image/png"))
    assert response.status_code == 302
    assert Study.objects.get().image.name.endswith(".png")


@pytest.mark.parametrize("age", ["0", "120", "0.5", "119.99"])
def test_it_accepts_ages_in_range(logged_in, patient, xray_upload, age):
    assert post(logged_in, patient, xray_upload, age=age).status_code == 302
    assert Study.objects.get().age_years == Decimal(age)


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"image": None}, "image", "This field is required."),
        ({"age": "-1"}, "age", "Ensure this value is greater than or equal to 0."),
        ({"age": "120.01"}, "age", "Ensure this value is less than or equal to 120."),
        ({"age": "130"}, "age", "Ensure this value is less than or equal to 120."),
        ({"age": "old"}, "age", "Enter a number."),
        ({"age": "NaN"}, "age", "Enter a number."),
        ({"age": "Infinity"}, "age", "Enter a number."),
        ({"age": "3.456"}, "age", "Ensure that there are no more than 2 decimal places."),
        ({"patient": None}, "patient", "This field is required."),
        ({"patient": "abc"}, "patient", "Select a valid choice."),
        ({"patient": "987654"}, "patient", "Select a valid choice."),
        ({"patient": "99999999999999999999999"}, "patient", "Select a valid choice."),
        ({"view": "XX"}, "view", "Select a valid choice."),
    ],
)
def test_it_shows_bad_fields_as_form_errors(logged_in, patient, xray_upload, settings, changes, field, message):
    response = post(logged_in, patient, xray_upload, **changes)
    assert response.status_code == 200
    assert any(message in e for e in response.context["form"].errors[field])
    assert message in response.content.decode()
    assert 'class="field has-error"' in response.content.decode()
    assert_nothing_saved(settings)


def test_it_keeps_the_other_values_after_an_error(logged_in, patient, xray_upload):
    response = post(logged_in, patient, xray_upload, age="200", notes="Left basal crackles", view="LAT")
    html = response.content.decode()
    assert 'value="200"' in html
    assert "Left basal crackles" in html
    assert '<option value="LAT" selected>' in html
    assert f'<option value="{patient.pk}" selected>' in html


def test_it_rejects_non_image_bytes_named_jpg(logged_in, patient, xray_upload, settings):
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=b"GIF89a not really", filename="x.jpg"))
    assert response.status_code == 200
    assert "File is not a JPEG, PNG or DICOM image." in image_errors(response)
    assert "File is not a JPEG, PNG or DICOM image." in response.content.decode()
    assert_nothing_saved(settings)


def test_it_rejects_text_named_jpg(logged_in, patient, xray_upload, settings):
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=b"hello, world\n" * 100, filename="x.jpg"))
    assert "not a JPEG, PNG or DICOM" in image_errors(response)
    assert_nothing_saved(settings)


def test_it_rejects_a_jpeg_header_with_junk(logged_in, patient, xray_upload, settings):
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=b"\xff\xd8\xff" + b"\0" * 500, filename="x.jpg"))
    assert "not a readable JPEG, PNG or DICOM" in image_errors(response)
    assert_nothing_saved(settings)


def test_it_rejects_a_truncated_jpeg(logged_in, patient, xray_upload, settings):
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=xray_bytes()[:3000], filename="x.jpg"))
    assert response.status_code == 200
    assert "Image data is truncated or corrupt." in image_errors(response)
    assert_nothing_saved(settings)


def test_it_rejects_an_empty_file(logged_in, patient, xray_upload, settings):
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=b"", filename="x.jpg"))
    assert response.status_code == 200
    assert "image" in response.context["form"].errors
    assert_nothing_saved(settings)


def test_it_rejects_a_file_over_the_byte_limit(logged_in, patient, xray_upload, settings):
    settings.PNEUMOWEB_MAX_UPLOAD_BYTES = len(xray_bytes()) - 1
    response = post(logged_in, patient, xray_upload)
    assert response.status_code == 200
    limit = len(xray_bytes()) - 1
    assert f"the limit is {limit / 1024:.1f}\xa0KB" in image_errors(response)
    assert_nothing_saved(settings)


def test_it_rejects_an_image_with_too_many_pixels(logged_in, patient, xray_upload, settings):
    settings.PNEUMOWEB_MAX_IMAGE_PIXELS = 224 * 224 - 1
    response = post(logged_in, patient, xray_upload)
    assert response.status_code == 200
    assert "Image is 224×224 pixels; the limit is 50,175 pixels." in image_errors(response)
    assert_nothing_saved(settings)


def test_it_rejects_a_tiny_image(logged_in, patient, xray_upload, settings):
    buffer = io.BytesIO()
    Image.new("L", (32, 32)).save(buffer, format="JPEG")
    response = post(logged_in, patient, xray_upload, image=xray_upload(data=buffer.getvalue(), filename="x.jpg"))
    assert "both sides must be at least" in image_errors(response)
    assert_nothing_saved(settings)


def test_it_refuses_another_clinicians_patient(logged_in, foreign_patient, xray_upload, settings):
    response = post(logged_in, foreign_patient, xray_upload)
    assert response.status_code == 200
    assert "Select a valid choice." in " ".join(response.context["form"].errors["patient"])
    assert_nothing_saved(settings)


def test_it_lets_a_reviewer_upload_only_for_own_patients(client, reviewer, patient, xray_upload, settings):
    assert client.login(username=reviewer.username, password=PASSWORD)
    verify_session(client, reviewer)
    response = post(client, patient, xray_upload)
    assert response.status_code == 200 and "patient" in response.context["form"].errors
    assert_nothing_saved(settings)


def test_it_enforces_csrf(clinician, patient, xray_upload, settings):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    response = post(client, patient, xray_upload)
    assert response.status_code == 403
    assert_nothing_saved(settings)


def test_it_accepts_the_csrf_token_of_the_form(clinician, patient, xray_upload):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=clinician.username, password=PASSWORD)
    token = client.get(URL).context["csrf_token"]
    response = post(client, patient, xray_upload, csrfmiddlewaretoken=str(token))
    assert response.status_code == 302
    assert Study.objects.count() == 1


# --- the preview script, run in Node with a minimal stand-in for the DOM ----------------

PREVIEW_HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const listeners = {};
const fileInput = { files: [], addEventListener: (type, fn) => { listeners[type] = fn; } };
const preview = { hidden: true, src: "" };
const empty = { hidden: false };
const els = { id_image: fileInput, preview: preview, "preview-empty": empty };
global.document = { getElementById: (id) => els[id] || null };
const revoked = [];
let n = 0;
global.URL = { createObjectURL: (file) => "blob:" + file.name + "#" + (++n), revokeObjectURL: (u) => revoked.push(u) };
require(input.script);
const states = [];
for (const files of input.selections) {
  fileInput.files = files;
  listeners.change();
  states.push({ previewHidden: preview.hidden, src: preview.src, emptyHidden: empty.hidden });
}
process.stdout.write(JSON.stringify({ states, revoked }));
"""


def run_node(harness, payload):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "-e", harness], input=json.dumps(payload), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_previews_the_chosen_file_before_submit():
    script = Path(django_settings.BASE_DIR) / "static" / "js" / "upload-preview.js"
    selections = [[{"name": "a.jpg"}], [{"name": "b.png"}], []]
    out = run_node(PREVIEW_HARNESS, {"script": str(script), "selections": selections})
    first, second, cleared = out["states"]
    assert first == {"previewHidden": False, "src": "blob:a.jpg#1", "emptyHidden": True}
    assert second == {"previewHidden": False, "src": "blob:b.png#2", "emptyHidden": True}
    assert cleared["previewHidden"] is True and cleared["emptyHidden"] is False
    assert out["revoked"] == ["blob:a.jpg#1", "blob:b.png#2"]  # object URLs are released


def test_it_accepts_a_dicom_without_an_age_and_shows_what_it_read(logged_in, patient, xray_upload):
    from ..dicoms import make_dicom

    upload = xray_upload(data=make_dicom(age="003Y", monochrome1=True), filename="chest.dcm",
                         content_type="application/dicom")
    response = post(logged_in, patient, xray_upload, image=upload, age="")
    assert response.status_code == 302, response.context["form"].errors if response.context else ""
    study = Study.objects.get()
    assert study.age_years == 3 and study.source_format == "DICOM"
    page = logged_in.get(response["Location"]).content.decode()
    assert "Age 3.0 years taken from the DICOM PatientAge." in page
    assert "stored as a de-identified PNG" in page


def test_it_rejects_a_ct_dicom_as_a_form_error(logged_in, patient, xray_upload, settings):
    from ..dicoms import bundled

    upload = xray_upload(data=bundled("CT_small.dcm"), filename="ct.dcm", content_type="application/dicom")
    response = post(logged_in, patient, xray_upload, image=upload)
    assert response.status_code == 200
    assert "a CT scan, not a radiograph" in image_errors(response)
    assert_nothing_saved(settings)


def test_it_uploads_several_xrays_at_once_each_its_own_study(logged_in, patient, xray_upload):
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "view": "PA", "image": [
        xray_upload("normal-1.jpeg"), xray_upload(data=b"GIF89a nope", filename="bad.jpg"),
        xray_upload("pneumonia-1.jpeg")]})
    assert response.status_code == 302  # Post/Redirect/Get: the results page can be reloaded safely
    html = logged_in.get(response["Location"]).content.decode()
    assert 'data-testid="upload-refused"' in html and "bad.jpg" in html and "File is not a JPEG" in html
    groups = {"succeeded": "upload-accepted", "queued": "upload-running", "running": "upload-running"}
    for prediction in Prediction.objects.all():
        assert f'data-testid="{groups.get(prediction.status, "upload-model-refused")}"' in html
    assert Study.objects.filter(patient=patient).count() == 2
    for prediction in Prediction.objects.all():
        assert prediction.get_absolute_url() in html


def test_it_refuses_a_batch_with_no_good_file_as_a_form_error(logged_in, patient, xray_upload):
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "view": "PA", "image": [
        xray_upload(data=b"GIF89a nope", filename="a.jpg"), xray_upload(data=b"nothing", filename="b.jpg")]})
    assert response.status_code == 200 and not Study.objects.exists()
    assert "a.jpg: File is not a JPEG" in response.content.decode()


def test_reloading_the_results_of_a_batch_uploads_nothing_again(logged_in, patient, xray_upload):
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "view": "PA", "image": [
        xray_upload("normal-1.jpeg"), xray_upload("pneumonia-1.jpeg")]})
    results = response["Location"]
    first, again = logged_in.get(results), logged_in.get(results)
    assert first.status_code == again.status_code == 200
    assert "2 X-rays uploaded" in first.content.decode() and "2 X-rays uploaded" in again.content.decode()
    assert Study.objects.filter(patient=patient).count() == 2
    for prediction in Prediction.objects.all():
        assert prediction.get_absolute_url() in again.content.decode()


def test_one_empty_file_is_refused_alone_by_name_in_a_batch(logged_in, patient, xray_upload):
    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "view": "PA", "image": [
        xray_upload("normal-1.jpeg"), xray_upload(data=b"", filename="empty.jpg"), xray_upload("pneumonia-1.jpeg")]})
    assert response.status_code == 302
    html = logged_in.get(response["Location"]).content.decode()
    assert "<strong>empty.jpg</strong>: The submitted file is empty." in html
    assert Study.objects.filter(patient=patient).count() == 2


def test_another_clinicians_batch_results_are_not_found(client, other_clinician, logged_in, patient, xray_upload):
    from ..factories import PASSWORD

    response = logged_in.post(URL, {"patient": patient.pk, "age": "3", "view": "PA", "image": [
        xray_upload("normal-1.jpeg"), xray_upload("pneumonia-1.jpeg")]})
    client.logout()
    assert client.login(username=other_clinician.username, password=PASSWORD)
    assert client.get(response["Location"]).status_code == 404


def test_it_takes_the_age_from_the_birth_date_on_record(logged_in, clinician, xray_upload):
    from ..factories import PatientFactory

    born = timezone.localdate() - timezone.timedelta(days=round(4.5 * 365.25))
    child = PatientFactory(owner=clinician, date_of_birth=born)
    assert post(logged_in, child, xray_upload, age="").status_code == 302
    study = Study.objects.get()
    assert study.age_years == Decimal("4.50") and "from the birth date on record" in study.source_notes[0]


def test_it_refuses_an_age_that_contradicts_the_birth_date(logged_in, clinician, xray_upload, settings):
    from ..factories import PatientFactory

    child = PatientFactory(owner=clinician, date_of_birth=timezone.localdate() - timezone.timedelta(days=3 * 365))
    response = post(logged_in, child, xray_upload, age="45")
    assert response.status_code == 200 and "contradicts the birth date on record" in response.content.decode()
    assert_nothing_saved(settings)


def test_it_accepts_a_study_with_no_age_at_all_and_says_so(logged_in, patient, xray_upload):
    assert post(logged_in, patient, xray_upload, age="").status_code == 302
    study = Study.objects.get()
    assert study.age_years is None and "No age" in study.source_notes[0]
    page = logged_in.get(reverse("prediction_detail", args=[study.predictions.get().pk])).content.decode()
    assert "<dd>unknown</dd>" in page


def test_the_batch_page_groups_results_with_their_reasons_and_polls_while_any_runs(logged_in, clinician, patient):
    from ..factories import PredictionFactory, StudyFactory

    done = PredictionFactory(study=StudyFactory(patient=patient, original_filename="clear.jpeg"), succeeded=True,
                             label="PNEUMONIA", probability=0.91, threshold=0.23, borderline=True)
    photo = PredictionFactory(study=StudyFactory(patient=patient, original_filename="astronaut.png"), rejected=True,
                              ood_reason="a colour photograph, not a radiograph")
    waiting = PredictionFactory(study=StudyFactory(patient=patient, original_filename="later.jpeg"))
    session = logged_in.session
    session["upload_batches"] = {"k1": {"patient": patient.pk, "predictions": [done.pk, photo.pk, waiting.pk],
                                        "refused": [["notes.txt", ["File is not an image."]]]}}
    session.save()
    html = logged_in.get("/upload/results/k1/").content.decode()
    assessed = html.split('data-testid="upload-accepted"')[1].split("</section>")[0]
    assert "clear.jpeg" in assessed and "PNEUMONIA" in assessed and "91.0%" in assessed and "borderline" in assessed
    refused = html.split('data-testid="upload-model-refused"')[1].split("</section>")[0]
    assert "astronaut.png" in refused and "a colour photograph, not a radiograph" in refused
    running = html.split('data-testid="upload-running"')[1].split("</section>")[0]
    assert "later.jpeg" in running and f"/api/predictions/{waiting.pk}/" in running
    assert f"/api/predictions/{done.pk}/" not in running
    assert "notes.txt" in html.split('data-testid="upload-refused"')[1] and "js/batch-poll.js" in html
