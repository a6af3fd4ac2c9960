"""POST /dicom-web/studies (STOW-RS), in process; tests/integration/test_pacs_orthanc.py sends from Orthanc."""

import io

import pydicom
import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from pacs.models import Instance
from tests.base import api_client_for
from tests.dicom_files import CT_IMAGE, chest, multipart_related, to_bytes

pytestmark = pytest.mark.django_db
URL = "/dicom-web/studies"


@pytest.fixture
def pacs_sender(clinician):
    clinician.user_permissions.add(Permission.objects.get(codename="add_instance", content_type__app_label="pacs"))
    return api_client_for(clinician)


def post(client, *parts, **kwargs):
    body, content_type = multipart_related(*parts, **kwargs)
    return client.generic("POST", URL, body, content_type=content_type)


def uids(sequence):
    return [item["00081155"]["Value"][0] for item in sequence["Value"]]


def test_it_stores_instances_and_answers_the_dicom_json_of_each(pacs_sender):
    frontal, ct = chest(), chest(modality="CT", sop_class=CT_IMAGE)
    response = post(pacs_sender, to_bytes(frontal), to_bytes(ct))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/dicom+json")
    assert uids(response.json()["00081199"]) == [frontal.SOPInstanceUID, ct.SOPInstanceUID]
    assert Instance.objects.get(sop_instance_uid=frontal.SOPInstanceUID).outcome == "waiting"
    assert Instance.objects.get(sop_instance_uid=ct.SOPInstanceUID).outcome == "skipped"
    assert Instance.objects.get(sop_instance_uid=frontal.SOPInstanceUID).received_from.startswith("STOW-RS by ")


def test_it_answers_202_with_the_failed_sop_sequence_when_some_parts_fail(pacs_sender):
    good = chest()
    response = post(pacs_sender, to_bytes(good), b"not a DICOM file")
    assert response.status_code == 202
    body = response.json()
    assert uids(body["00081199"]) == [good.SOPInstanceUID]
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_it_answers_409_when_every_part_fails(pacs_sender):
    assert post(pacs_sender, b"junk").status_code == 409
    assert not Instance.objects.exists()


def test_it_refuses_a_part_that_is_not_dicom_with_415(pacs_sender):
    response = post(pacs_sender, b"{}", part_type="application/json")
    assert response.status_code == 415
    assert "application/dicom" in response.json()["detail"]


def test_it_refuses_a_body_that_is_not_multipart_related(pacs_sender):
    response = pacs_sender.generic("POST", URL, b"--x\r\n", content_type="multipart/related")
    assert response.status_code == 400
    assert response.json()["detail"]
    response = pacs_sender.generic("POST", URL, to_bytes(chest()), content_type="application/dicom")
    assert response.status_code == 415


def test_it_needs_a_token_and_the_sender_permission(clinician):
    body, content_type = multipart_related(to_bytes(chest()))
    assert APIClient().generic("POST", URL, body, content_type=content_type).status_code == 401
    response = api_client_for(clinician).generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 403 and "pacs.add_instance" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_it_counts_a_repeat_as_stored_without_a_second_instance(pacs_sender):
    dataset = chest()
    assert post(pacs_sender, to_bytes(dataset)).status_code == 200
    assert post(pacs_sender, to_bytes(dataset)).status_code == 200
    assert Instance.objects.count() == 1


@pytest.mark.parametrize("body", [b"", b"--pneumoweb-test-boundary--\r\n", b"\xff\x00" * 50])
def test_it_answers_a_client_error_for_bodies_without_a_dicom_part(pacs_sender, body):
    response = pacs_sender.generic(
        "POST", URL, body, content_type='multipart/related; type="application/dicom"; boundary=pneumoweb-test-boundary')
    assert 400 <= response.status_code < 500
    assert response.json()
    assert not Instance.objects.exists()


# --- what standard clients send (issue 28) --------------------------------------------------------


@pytest.mark.parametrize("accept, answered", [
    ("application/dicom+json", "application/dicom+json"),  # Orthanc's, and PS3.18's
    ("application/json", "application/json"),
    ("*/*", "application/dicom+json"),
    ("application/dicom+json, application/json;q=0.5", "application/dicom+json"),
])
def test_it_answers_the_accept_headers_dicomweb_clients_send(pacs_sender, accept, answered):
    frontal = chest()
    body, content_type = multipart_related(to_bytes(frontal))
    response = pacs_sender.generic("POST", URL, body, content_type=content_type, HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(answered)
    assert uids(response.json()["00081199"]) == [frontal.SOPInstanceUID]


def test_an_accept_it_cannot_answer_is_a_406_that_says_what_would_do(pacs_sender):
    body, content_type = multipart_related(to_bytes(chest()))
    response = pacs_sender.generic("POST", URL, body, content_type=content_type,
                                   HTTP_ACCEPT='multipart/related; type="application/dicom+xml"')
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["detail"] and "dicom+xml" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_a_body_over_the_limit_is_a_413_that_states_it(pacs_sender, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body, content_type = multipart_related(to_bytes(chest()))
    response = pacs_sender.generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 413 and "10,000 bytes" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_it_takes_what_dicomweb_client_sends_for_a_data_set_without_file_meta(pacs_sender):
    # dicomweb-client 0.61's store_instances writes each data set with pydicom.dcmwrite as it is: one read
    # without its PS3.10 header goes out without preamble or file meta (was refused 0xC000, 409).
    from dicomweb_client import DICOMwebClient

    frontal = chest()
    bare = pydicom.dcmread(io.BytesIO(to_bytes(frontal)))
    del bare.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, bare, implicit_vr=False, little_endian=True)
    content_type = 'multipart/related; type="application/dicom"; boundary=0f3cf5c0-0123'
    body = DICOMwebClient._encode_multipart_message([buffer.getvalue()], content_type)
    response = pacs_sender.generic("POST", URL, body, content_type=content_type,
                                   HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content
    assert Instance.objects.get(sop_instance_uid=frontal.SOPInstanceUID).outcome == "waiting"


def test_a_part_that_is_no_data_set_at_all_still_fails_alone(pacs_sender):
    response = post(pacs_sender, b"\x00" * 200, to_bytes(chest()))
    assert response.status_code == 202
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_a_film_that_cannot_be_decoded_is_stored_with_a_warning_that_says_why(pacs_sender):
    from .test_compressed import FILMS, renamed
    from .test_listener import pydicom_fragments

    dataset = renamed(next(path for path in FILMS if path.stem == "jpeg-2000"))
    dataset.PixelData = pydicom_fragments(dataset)
    response = post(pacs_sender, to_bytes(dataset))
    assert response.status_code == 200
    assert response.json()["00081199"]["Value"][0]["00081196"]["Value"] == [0xB000]
    assert response["Warning"].startswith(f'299 pneumoweb "{dataset.SOPInstanceUID} not assessed: the image could '
                                          'not be read')
