"""The DICOM C-STORE listener (``manage.py dicom_listener``): one AE that stores what allowed senders push.

- Calling AE titles not in ``PNEUMOWEB_DICOM_ALLOWED_AETS`` are refused at association (pynetdicom's
  ``require_calling_aet``); with none configured the listener refuses to start, since pynetdicom
  reads an empty list as "accept anyone".
- Each C-STORE is answered only after ``ingest.receive`` committed the instance: success (0x0000),
  also for a repeat and for an instance skipped with a reason; 0xA700 (out of resources, the
  sender retries) when the database or the disk failed; 0xA900 for an instance without its UIDs.
- Verification (C-ECHO) is answered, so a PACS administrator can test the route.
pynetdicom runs each association on its own thread: each handler closes its database connection.
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from .ingest import Unacceptable, receive

log = logging.getLogger(__name__)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900


def handle_store(event):
    close_old_connections()
    calling = event.assoc.requestor.ae_title.strip()
    sender = f"C-STORE from {calling} at {event.assoc.requestor.address}"
    try:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        received = receive(dataset, received_from=sender)
    except Unacceptable as exc:
        log.warning("Refused an instance from %s: %s", sender, exc)
        return CANNOT_UNDERSTAND
    except (DatabaseError, OSError):
        log.exception("Could not store an instance from %s; the sender will retry", sender)
        return OUT_OF_RESOURCES
    except Exception:  # noqa: BLE001 - an unreadable dataset or a bug: the sender learns it failed
        log.exception("Could not read an instance from %s", sender)
        return CANNOT_UNDERSTAND
    finally:
        connection.close()
    if received.repeat:
        log.info("Instance %s from %s was received before", received.instance.sop_instance_uid, sender)
    return SUCCESS


def make_ae():
    allowed = settings.PNEUMOWEB_DICOM_ALLOWED_AETS
    if not allowed:
        raise ImproperlyConfigured(
            "PNEUMOWEB_DICOM_ALLOWED_AETS is empty: name the calling AE titles (the PACS, the modalities) "
            "the listener may accept, e.g. PNEUMOWEB_DICOM_ALLOWED_AETS=ORTHANC,CR_ROOM_1")
    ae = AE(ae_title=settings.PNEUMOWEB_DICOM_AE_TITLE)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.require_calling_aet = allowed
    ae.require_called_aet = True
    ae.maximum_associations = 16
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
    return ae


def serve(*, block=True):
    """Start listening; returns the server (non-blocking) or serves until interrupted."""
    ae = make_ae()
    address = (settings.PNEUMOWEB_DICOM_BIND, settings.PNEUMOWEB_DICOM_PORT)
    handlers = [(evt.EVT_C_STORE, handle_store), (evt.EVT_C_ECHO, lambda event: SUCCESS)]
    log.info("DICOM listener %s on %s:%s accepting %s", settings.PNEUMOWEB_DICOM_AE_TITLE, *address,
             ", ".join(settings.PNEUMOWEB_DICOM_ALLOWED_AETS))
    return ae.start_server(address, block=block, evt_handlers=handlers)
