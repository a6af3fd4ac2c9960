"""The DICOM C-STORE listener (``manage.py dicom_listener``): one AE that stores what allowed senders push.

- Calling AE titles not in ``PNEUMOWEB_DICOM_ALLOWED_AETS`` are refused at association (pynetdicom's
  ``require_calling_aet``); with none configured the listener refuses to start, since pynetdicom
  reads an empty list as "accept anyone".
- Each C-STORE is answered only after ``ingest.receive`` committed the instance: success (0x0000),
  also for a repeat and for an instance skipped with a reason; a warning (0xB000, "not assessed:"
  and the reason in ErrorComment) for a frontal chest film whose image could not be read, so the
  PACS hears of it; 0xA700 (out of resources, the sender retries) when the database or the disk
  failed; 0xA900 for an instance without its UIDs.
- One log line per instance (stored, skipped with its reason, a repeat) and per refused association
  (the calling and called AE titles, the address and the reason).
- Verification (C-ECHO) is answered, so a PACS administrator can test the route.
pynetdicom runs each association on its own thread: each handler closes its database connection.
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import Verification

from .ingest import UNREADABLE, Unacceptable, receive

log = logging.getLogger(__name__)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND, NOT_ASSESSED = 0x0000, 0xA700, 0xA900, 0xB000


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
    instance = received.instance
    if received.repeat:
        log.info("Instance %s from %s was received before", instance.sop_instance_uid, sender)
    elif instance.outcome == instance.Outcome.SKIPPED:
        log.info("Instance %s from %s stored, not assessed: %s", instance.sop_instance_uid, sender,
                 instance.skip_reason)
        if instance.skip_reason.startswith(UNREADABLE):
            return not_assessed()
    else:
        log.info("Instance %s from %s stored for assessment", instance.sop_instance_uid, sender)
    return SUCCESS


def not_assessed():
    """A C-STORE warning status whose ErrorComment says the film is not assessed, and why.

    ErrorComment is LO (64 characters): the decoder's whole message is in this listener's log line.
    """
    status = Dataset()
    status.Status = NOT_ASSESSED
    status.ErrorComment = "not assessed: its image could not be read or decoded"
    return status


def log_rejection(event):
    # pynetdicom's own line names neither the AE titles nor the reason; the operator needs both.
    requestor, acceptor = event.assoc.requestor, event.assoc.acceptor
    calling = requestor.ae_title.strip()
    called = str(getattr(requestor.primitive, "called_ae_title", None) or acceptor.ae_title).strip()
    if calling not in settings.PNEUMOWEB_DICOM_ALLOWED_AETS:
        reason = f"calling AE title {calling!r} is not in PNEUMOWEB_DICOM_ALLOWED_AETS"
    elif called != settings.PNEUMOWEB_DICOM_AE_TITLE:
        reason = f"called AE title {called!r} is not this listener's ({settings.PNEUMOWEB_DICOM_AE_TITLE!r})"
    else:
        reason = "refused by the association rules (too many associations, or no acceptable presentation context)"
    log.warning("Rejected an association from %s at %s:%s to %s: %s", calling, requestor.address, requestor.port,
                called, reason)


# Uncompressed first (preferred when a sender offers several), then the compressed syntaxes whose pixel
# data pydicom decodes with python-gdcm (tests/pacs/test_compressed.py decodes a film in each).
ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
]


def make_ae():
    allowed = settings.PNEUMOWEB_DICOM_ALLOWED_AETS
    if not allowed:
        raise ImproperlyConfigured(
            "PNEUMOWEB_DICOM_ALLOWED_AETS is empty: name the calling AE titles (the PACS, the modalities) "
            "the listener may accept, e.g. PNEUMOWEB_DICOM_ALLOWED_AETS=ORTHANC,CR_ROOM_1")
    ae = AE(ae_title=settings.PNEUMOWEB_DICOM_AE_TITLE)
    # Every storage SOP class, in the uncompressed syntaxes and in every compressed one pydicom decodes
    # here (python-gdcm): a PACS that cannot decompress can still send (docs/DICOM_CONFORMANCE.md).
    ae.supported_contexts = [build_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
                             for context in AllStoragePresentationContexts]
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
    handlers = [(evt.EVT_C_STORE, handle_store), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                (evt.EVT_REJECTED, log_rejection)]
    log.info("DICOM listener %s on %s:%s accepting %s", settings.PNEUMOWEB_DICOM_AE_TITLE, *address,
             ", ".join(settings.PNEUMOWEB_DICOM_ALLOWED_AETS))
    return ae.start_server(address, block=block, evt_handlers=handlers)
