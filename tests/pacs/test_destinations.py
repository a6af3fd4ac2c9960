"""Destinations: validated per kind in the admin, internal host names accepted, and a test-connection action."""

import pytest
from django.core.exceptions import ValidationError

from pacs.listener import serve
from pacs.models import Destination
from tests.base import make_admin, signed_in_client
from tests.orthanc import free_port

pytestmark = pytest.mark.django_db
ADD = "/admin/pacs/destination/add/"


def valid(**fields):
    destination = Destination(name="pacs", **fields)
    destination.full_clean()
    return destination


@pytest.mark.parametrize("url", ["http://pacs:8042/dicom-web", "http://10.1.2.3:8042/dicom-web",
                                 "https://pacs.hospital.example/dicom-web/", "http://[fd00::1]:8042/dicom-web"])
def test_it_accepts_the_urls_hospitals_use(url):
    valid(kind="dicomweb", url=url)


@pytest.mark.parametrize("fields, field, words", [
    ({"kind": "dicomweb"}, "url", "needs this"),
    ({"kind": "dicomweb", "url": "pacs:8042/dicom-web"}, "url", "http:// or https://"),
    ({"kind": "dicomweb", "url": "ftp://pacs/dicom-web"}, "url", "http:// or https://"),
    ({"kind": "dicomweb", "url": "http://pacs:99999/dicom-web"}, "url", "http:// or https://"),
    ({"kind": "dicomweb", "url": "http://pacs/dicom-web", "ae_title": "ORTHANC"}, "ae_title", "leave it empty"),
    ({"kind": "dimse"}, "ae_title", "needs this"),
    ({"kind": "dimse", "ae_title": "ORTHANC", "host": "pacs"}, "port", "needs this"),
    ({"kind": "dimse", "ae_title": "A\\\\B", "host": "pacs", "port": 104}, "ae_title", "without a backslash"),
    ({"kind": "dimse", "ae_title": "ORTHANC", "host": "pacs:4242", "port": 104}, "host", "host name or IP"),
    ({"kind": "dimse", "ae_title": "ORTHANC", "host": "pacs", "port": 70000}, "port", "65535"),
])
def test_it_refuses_what_a_kind_cannot_use(fields, field, words):
    with pytest.raises(ValidationError) as refused:
        valid(**fields)
    assert words in " ".join(refused.value.message_dict[field])


def test_the_admin_refuses_a_stow_rs_destination_without_a_url_and_saves_nothing():
    client = signed_in_client(make_admin())
    response = client.post(ADD, {"name": "pacs", "kind": "dicomweb", "url": "", "ae_title": "", "host": "",
                                 "port": "", "enabled": "on"})
    assert response.status_code == 200 and "needs this" in response.content.decode()
    assert not Destination.objects.exists()
    saved = client.post(ADD, {"name": "pacs", "kind": "dicomweb", "url": "http://pacs:8042/dicom-web", "ae_title": "",
                              "host": "", "port": "", "enabled": "on"})
    assert saved.status_code == 302 and Destination.objects.get().url == "http://pacs:8042/dicom-web"


@pytest.fixture
def listener(settings):
    settings.PNEUMOWEB_DICOM_ALLOWED_AETS = ["PNEUMOWEB"]  # the test connection calls as this AE itself
    settings.PNEUMOWEB_DICOM_PORT = free_port()
    server = serve(block=False)
    yield settings.PNEUMOWEB_DICOM_PORT
    server.shutdown()


def test_the_test_connection_action_echoes_a_dicom_peer_and_says_what_failed(listener):
    client = signed_in_client(make_admin())
    good = Destination.objects.create(name="echo", kind="dimse", ae_title="PNEUMOWEB", host="127.0.0.1", port=listener)
    wrong = Destination.objects.create(name="wrong-ae", kind="dimse", ae_title="NOBODY", host="127.0.0.1", port=listener)
    closed = Destination.objects.create(name="closed", kind="dicomweb", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    response = client.post("/admin/pacs/destination/", {"action": "test_connection",
                                                        "_selected_action": [good.pk, wrong.pk, closed.pk]},
                           follow=True)
    said = [str(message) for message in response.context["messages"]]
    assert "echo: answered." in said
    assert any(line.startswith("wrong-ae: C-ECHO to NOBODY@") and "association rejected" in line for line in said)
    assert any(line.startswith("closed: DICOMweb http://127.0.0.1:") and "cannot connect" in line for line in said)
