"""STOW-RS (DICOM PS3.18 §10.5): ``POST /dicom-web/studies`` stores instances sent over HTTP.

The body is ``multipart/related; type="application/dicom"``, one DICOM file per part; each part
goes through the same ``ingest.receive`` as a C-STORE, so the rules (what is assessed, what is
skipped, repeats) are one. The answer is the standard DICOM JSON: ReferencedSOPSequence
(0008,1199) for each instance stored or acknowledged, FailedSOPSequence (0008,1198) with a
FailureReason (0008,1197) for each refused; 200 when none failed, 202 when some did, 409 when
all did. Senders need the ``pacs.add_instance`` permission (a PACS service user's token), not
only a login: what arrives here creates patients for the PACS account.

What standard clients send, taken as they send it (docs/DICOM_CONFORMANCE.md):
- ``Accept: application/dicom+json`` (PS3.18's answer type; Orthanc always asks for it),
  ``application/json`` or ``*/*``; an Accept that allows none of them is a 406 that says what would do.
- A chunked body (Orthanc's default ``ChunkedTransfers``, dicomweb-client) is read whole by
  core/chunked.py before it gets here. A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413 that
  states the limit.
- A part that is a bare data set without the PS3.10 preamble and file meta (what
  ``dicomweb-client.store_instances`` sends for a data set read without them) is read as one.
"""

import email.parser
import email.policy
import io
import logging

import pydicom
import pydicom.errors
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from rest_framework import permissions, status
from rest_framework.exceptions import APIException, NotAcceptable, ParseError, UnsupportedMediaType
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.chunked import too_large_message

from .ingest import UNREADABLE, Unacceptable, receive

log = logging.getLogger(__name__)

CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0xC000, 0xA700


class TooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class DicomJsonRenderer(JSONRenderer):
    media_type = "application/dicom+json"
    format = "dicom+json"


class DicomWebNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with a 406 that names what this endpoint can answer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            offered = ", ".join(renderer.media_type for renderer in renderers)
            raise NotAcceptable(f"STOW-RS answers in {offered} (or */*); the request's Accept header "
                                f"({request.META.get('HTTP_ACCEPT', '')}) allows none of them.") from None


def read_part(data):
    """A part's DICOM data set: a PS3.10 file, or a bare data set without preamble and file meta."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except pydicom.errors.InvalidDicomError:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    if "SOPInstanceUID" not in dataset or "SOPClassUID" not in dataset:
        raise pydicom.errors.InvalidDicomError("not a DICOM data set: no SOP Class and Instance UIDs")
    if "TransferSyntaxUID" not in getattr(dataset, "file_meta", {}):
        # The file meta it came without, from the encoding pydicom found it in (never compressed: a
        # compressed data set cannot be read without its transfer syntax).
        implicit, little = dataset.original_encoding
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                               ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return dataset


class MultipartRelatedParser(BaseParser):
    """Returns the DICOM parts' bytes; any part of another type is refused (415)."""

    media_type = "multipart/related"

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # DRF reads the request as a stream, which Django does not hold to its limit (only .body is).
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise TooLarge(too_large_message(limit))
        try:
            body = stream.read() if stream is not None else b""
        except RequestDataTooBig:
            raise TooLarge(too_large_message(limit)) from None
        header = request.META.get("CONTENT_TYPE", "").encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + header + b"\r\n\r\n" + body)
        if not message.is_multipart() or not message.get_boundary():
            raise ParseError("Send multipart/related with a boundary, one application/dicom part per instance.")
        parts = []
        for part in message.iter_parts():
            if part.get_content_type() != "application/dicom":
                raise UnsupportedMediaType(part.get_content_type(),
                                           detail="Every part must be application/dicom (DICOM PS3.10 files).")
            parts.append(part.get_payload(decode=True) or b"")
        if not parts:
            raise ParseError("The request holds no DICOM part.")
        return parts


class CanSendStudies(permissions.BasePermission):
    message = "Storing studies needs a PACS sender account (the pacs.add_instance permission)."

    def has_permission(self, request, view):
        return request.user.has_perm("pacs.add_instance")


def _item(dataset_uids, **extra):
    sop_class, sop_instance = dataset_uids
    item = {"00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
            "00081155": {"vr": "UI", "Value": [sop_instance]} if sop_instance else {"vr": "UI"}}
    item.update(extra)
    return item


class StowView(APIView):
    parser_classes = [MultipartRelatedParser]
    renderer_classes = [DicomJsonRenderer, JSONRenderer]
    content_negotiation_class = DicomWebNegotiation
    permission_classes = [permissions.IsAuthenticated, CanSendStudies]

    @extend_schema(
        operation_id="dicomweb_store_instances",
        tags=["dicom-web"],
        summary="STOW-RS: store DICOM instances (multipart/related; type=\"application/dicom\")",
        request={"multipart/related": OpenApiTypes.BINARY},
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="Every instance stored (DICOM JSON)."),
            202: OpenApiResponse(OpenApiTypes.OBJECT, description="Some instances failed: FailedSOPSequence."),
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="Every instance failed: FailedSOPSequence."),
            400: OpenApiResponse(description="Not multipart/related, or no DICOM part."),
            406: OpenApiResponse(description="The Accept header allows neither application/dicom+json nor "
                                             "application/json."),
            413: OpenApiResponse(description="The body is larger than this server accepts (the limit is stated)."),
            415: OpenApiResponse(description="A part is not application/dicom."),
        },
        examples=[OpenApiExample("stored", response_only=True, status_codes=["200"], value={
            "00081199": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.1.1"]},
                                               "00081155": {"vr": "UI", "Value": ["1.2.3.4"]}}]}})],
    )
    def post(self, request):
        stored, failed, warnings = [], [], []
        sender = f"STOW-RS by {request.user.get_username()}"
        parts = request.data if isinstance(request.data, list) else []
        if not parts:  # an empty body never reaches the parser: DRF reads it as no data at all
            raise ParseError("The request holds no DICOM part.")
        for data in parts:
            uids = ("", "")
            try:
                dataset = read_part(data)
                uids = (str(dataset.get("SOPClassUID", "")), str(dataset.get("SOPInstanceUID", "")))
                received = receive(dataset, received_from=sender)
            except Unacceptable as exc:
                failed.append(_item(uids, **{"00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]}}))
                log.info("STOW-RS instance refused: %s", exc)
            except DatabaseError:
                log.exception("STOW-RS could not store an instance")
                failed.append(_item(uids, **{"00081197": {"vr": "US", "Value": [OUT_OF_RESOURCES]}}))
            except Exception:  # noqa: BLE001 - not a DICOM file, or unreadable: that part fails, the rest go on
                log.info("STOW-RS part could not be read as DICOM", exc_info=True)
                failed.append(_item(uids, **{"00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]}}))
            else:
                extra = {}
                if received.instance.outcome == received.instance.Outcome.SKIPPED:
                    # Stored in the sense of PS3.18 (accepted, will not be sent again), with the reason.
                    extra["00081196"] = {"vr": "US", "Value": [0xB000]}  # WarningReason: coercion/ignored
                    if received.instance.skip_reason.startswith(UNREADABLE):
                        # A frontal chest film that will not be assessed: the sender must hear why.
                        warnings.append(f"{uids[1]} not assessed: {received.instance.skip_reason}")
                stored.append(_item(uids, **extra))
        body = {}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        code = status.HTTP_200_OK if not failed else (status.HTTP_202_ACCEPTED if stored else status.HTTP_409_CONFLICT)
        response = Response(body, status=code)
        if warnings:  # PS3.18 §8.4.3: the Warning header field carries what the status code cannot
            response["Warning"] = ", ".join(f'299 pneumoweb "{header_safe(text)}"' for text in warnings)
        return response


def header_safe(text):
    return text.encode("ascii", "replace").decode().replace('"', "'").replace("\r", " ").replace("\n", " ")[:500]
