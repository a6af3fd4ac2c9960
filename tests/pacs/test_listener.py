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


def test_it_logs_each_refused_association_with_the_ae_titles_and_the_reason(listener, caplog):
    caplog.set_level("WARNING", logger="pacs.listener")
    associate(listener, calling="INTRUDER")
    associate(listener, calling="ORTHANC", called="SOMEONE_ELSE")
    lines = [r.getMessage() for r in caplog.records if r.name == "pacs.listener"]
    assert any("from INTRUDER" in line and "'INTRUDER' is not in PNEUMOWEB_DICOM_ALLOWED_AETS" in line
               for line in lines), lines
    assert any("to SOMEONE_ELSE" in line and "called AE title 'SOMEONE_ELSE' is not this listener's" in line
               for line in lines), lines


def send(port, dataset, *, calling="ORTHANC"):
    from pynetdicom import build_context

    ae = AE(ae_title=calling)
    ae.requested_contexts = [build_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])]
    association = ae.associate("127.0.0.1", port, ae_title="PNEUMOWEB")
    assert association.is_established
    try:
        return association.send_c_store(dataset)
    finally:
        association.release()


@pytest.mark.django_db(transaction=True)
def test_a_compressed_film_is_taken_and_logged_as_stored_for_assessment(listener, caplog):
    import pydicom

    from pacs.models import Instance

    from .test_compressed import FILMS, renamed

    caplog.set_level("INFO", logger="pacs.listener")
    dataset = renamed(next(path for path in FILMS if path.stem == "jpeg-lossless-sv1"))
    assert dataset.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    assert send(listener, dataset).Status == 0x0000
    assert Instance.objects.get(sop_instance_uid=dataset.SOPInstanceUID).outcome == "waiting"
    assert any(f"Instance {dataset.SOPInstanceUID} from C-STORE from ORTHANC" in r.getMessage()
               and "stored for assessment" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_a_film_that_cannot_be_decoded_is_a_warning_that_says_so(listener):
    from pacs.models import Instance

    from .test_compressed import FILMS, renamed

    dataset = renamed(next(path for path in FILMS if path.stem == "jpeg-lossless-sv1"))
    fragments = pydicom_fragments(dataset)
    dataset.PixelData = fragments  # a damaged codestream
    status = send(listener, dataset)
    assert status.Status == 0xB000 and status.ErrorComment == "not assessed: its image could not be read or decoded"
    assert Instance.objects.get(sop_instance_uid=dataset.SOPInstanceUID).outcome == "skipped"


def pydicom_fragments(dataset):
    """The data set's encapsulated pixel data with its one frame's codestream cut to its first 40 bytes."""
    from pydicom.encaps import encapsulate, generate_frames

    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    return encapsulate([frame[:40]])
