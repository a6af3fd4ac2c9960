"""The C-STORE listener's door (pacs/listener.py): who may associate. Storing is covered end to end in
tests/integration/test_pacs_orthanc.py (a real Orthanc pushing to the real listener process)."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from pacs.listener import serve
from tests.orthanc import free_port


@pytest.fixture
def listener(settings):
    settings.PNEUMOWEB_DICOM_ALLOWED_AETS = ["ORTHANC", "CR_ROOM_1"]
    settings.PNEUMOWEB_DICOM_PORT = free_port()
    server = serve(block=False)
    yield settings.PNEUMOWEB_DICOM_PORT
    server.shutdown()


def associate(port, *, calling, called="PNEUMOWEB"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_it_answers_an_echo_from_an_allowed_calling_ae(listener):
    association = associate(listener, calling="CR_ROOM_1")
    assert association.is_established
    assert association.send_c_echo().Status == 0x0000
    association.release()


def test_it_refuses_an_unknown_calling_ae_at_association(listener):
    association = associate(listener, calling="STRANGER")
    assert association.is_rejected and not association.is_established


def test_it_refuses_a_wrong_called_ae(listener):
    assert associate(listener, calling="ORTHANC", called="SOMEONE_ELSE").is_rejected


def test_it_refuses_to_start_without_an_allow_list(settings):
    settings.PNEUMOWEB_DICOM_ALLOWED_AETS = []
    with pytest.raises(ImproperlyConfigured, match="PNEUMOWEB_DICOM_ALLOWED_AETS"):
        serve(block=False)
