"""Compressed films in: each transfer syntax a PACS sends is decoded (python-gdcm), by STOW-RS and by an upload.

The fixtures (tests/fixtures/dicom-compressed/, remade by its make.sh with dcmtk and GDCM) are one
chest film in each syntax; tests/integration/test_pacs_orthanc.py sends them with dcmtk's storescu.
"""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.contrib.auth.models import Permission

from pacs.listener import ACCEPTED_TRANSFER_SYNTAXES
from pacs.models import Instance
from tests.base import api_client_for
from tests.dicom_files import multipart_related

pytestmark = pytest.mark.django_db
FILMS = sorted((Path(__file__).parent.parent / "fixtures" / "dicom-compressed").glob("*.dcm"))
LOSSLESS = ("lossless", "rle")


def renamed(path):
    """The fixture with new SOP Instance and Study UIDs (each test stores it as a new instance)."""
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.StudyInstanceUID = pydicom.uid.generate_uid()
    return dataset


def test_there_is_a_fixture_in_every_compressed_syntax_the_listener_accepts():
    syntaxes = {pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID for path in FILMS}
    compressed = {uid for uid in ACCEPTED_TRANSFER_SYNTAXES if uid.is_compressed}
    assert syntaxes == compressed and len(FILMS) == 9


@pytest.mark.parametrize("path", FILMS, ids=[path.stem for path in FILMS])
def test_it_decodes_the_film_in_each_syntax(path):
    reference = pydicom.dcmread(FILMS[0].parent / "jpeg-ls-lossless.dcm").pixel_array.astype(int)
    pixels = pydicom.dcmread(path).pixel_array.astype(int)
    assert pixels.shape == reference.shape == (256, 256)
    if any(word in path.stem for word in LOSSLESS) and "near" not in path.stem:
        assert np.array_equal(pixels, reference)
    else:
        assert np.abs(pixels - reference).mean() < 3  # lossy, but the same film


@pytest.mark.parametrize("path", FILMS, ids=[path.stem for path in FILMS])
def test_stow_rs_takes_each_syntax_for_assessment(clinician, path):
    clinician.user_permissions.add(Permission.objects.get(codename="add_instance", content_type__app_label="pacs"))
    dataset = renamed(path)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    body, content_type = multipart_related(buffer.getvalue())
    response = api_client_for(clinician).generic("POST", "/dicom-web/studies", body, content_type=content_type)
    assert response.status_code == 200, response.content
    instance = Instance.objects.get(sop_instance_uid=dataset.SOPInstanceUID)
    assert instance.outcome == "waiting" and instance.skip_reason == ""
    assert "00081196" not in response.json()["00081199"]["Value"][0]  # no warning: it will be assessed


def test_an_upload_takes_a_compressed_dicom_too(logged_in, patient):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("film.dcm", (FILMS[0].parent / "jpeg-2000.dcm").read_bytes(), "application/dicom")
    response = logged_in.post("/upload/", {"patient": patient.pk, "age": "40", "view": "PA", "image": upload})
    assert response.status_code == 302, response.content.decode()[-2000:]
