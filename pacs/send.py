"""Send one DICOM dataset to one destination (STOW-RS or C-STORE) and say what happened.

The contract: ``send(dataset, destination)`` makes exactly one attempt and never raises. It returns
an ``Outcome``: ``sent``, and when not sent whether trying again later is worth it (``retry``) and
a one-line ``error`` for people and logs. Back-off, attempt counts and giving up belong to the
caller (the job that owns the delivery), so that every attempt is visible there; this module
neither sleeps nor retries (``dicomweb_client`` would retry 5 times with up to 16 s back-off
inside one call, which is why STOW-RS here is a plain ``requests`` POST).

Which failures are worth a retry (the product's issue):

* retry: no connection, timeouts, an aborted association or a missing C-STORE response;
  HTTP 5xx, 408 and 429; C-STORE status 0xA7xx (out of resources); an association rejected
  *transiently* (the peer's "temporary congestion" / "local limit exceeded").
* no retry: an association rejected permanently (wrong called AE title, calling AE not known);
  no accepted presentation context (the peer does not take this SOP class); HTTP 4xx other than
  408/429 and 3xx (a wrong URL); C-STORE status 0xA9xx, 0xCxxx and any other failure status
  (0x0110 processing failure, 0x0122 SOP class not supported, 0x0124 not authorised, ...):
  the same bytes would fail the same way.
* sent: status 0x0000 and the warnings 0x0001 / 0xBxxx (0xB000 coercion, 0xB006 elements
  discarded, 0xB007 data set does not match SOP class): the PACS kept the instance.

STOW-RS: a 2xx answer whose FailedSOPSequence names instances is a failure; so is a 409 (the
standard's "some instances failed"). Their FailureReason is a C-STORE status and is classified
like one, so only "out of resources" is retried. Orthanc sends its error answers without a
Content-Type header, so the body is read as DICOM JSON whatever the header says.

An exception anywhere else is a bug or a bad configuration (an invalid AE title, a URL without
a scheme): not sent, no retry, the exception's type in the error. Sending an instance the PACS
already holds is "sent" (Orthanc answers 200 / 0x0000 and keeps one copy), so a retry after a
lost answer is harmless.
"""

import copy
import io
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus

import requests
from pydicom import dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

DICOMWEB = "dicomweb"
DIMSE = "dimse"


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str  # "dicomweb" (STOW-RS) or "dimse" (C-STORE)
    url: str = ""  # STOW-RS base, e.g. http://host:8042/dicom-web  (POST {url}/studies)
    ae_title: str = ""  # called AE for C-STORE
    host: str = ""
    port: int = 0
    calling_ae: str = "PNEUMOWEB"
    timeout: float = 30.0


@dataclass(frozen=True)
class Outcome:
    sent: bool
    retry: bool  # worth trying again later (only meaningful when not sent)
    error: str  # "" when sent; otherwise a one-line reason for people/logs


SENT = Outcome(sent=True, retry=False, error="")

_DIMSE_FAILURES = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "refused: not authorised",
    0x0210: "duplicate invocation",
    0x0211: "unrecognised operation",
    0x0212: "mistyped argument",
    0xFE00: "cancelled",
}


def _failed(retry, error):
    return Outcome(sent=False, retry=retry, error=" ".join(str(error).split())[:500])


def classify_dimse_status(code, comment=""):
    """The Outcome of a C-STORE status (or a STOW-RS FailureReason, which uses the same codes)."""
    code = int(code)
    text = f"C-STORE status 0x{code:04X}"
    if code == 0x0000 or code == 0x0001 or 0xB000 <= code <= 0xBFFF:
        return SENT
    if 0xA700 <= code <= 0xA7FF:
        meaning, retry = "out of resources", True
    elif 0xA900 <= code <= 0xA9FF:
        meaning, retry = "data set does not match SOP class", False
    elif 0xC000 <= code <= 0xCFFF:
        meaning, retry = "cannot understand", False
    else:
        meaning, retry = _DIMSE_FAILURES.get(code, "failure"), False
    return _failed(retry, f"{text} ({meaning}){': ' + comment if comment else ''}")


def classify_http_status(code, detail=""):
    """The Outcome of a STOW-RS answer's HTTP status (before looking at its FailedSOPSequence)."""
    code = int(code)
    if 200 <= code <= 299:
        return SENT
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "unknown status"
    retry = code in (408, 429) or 500 <= code <= 599
    return _failed(retry, f"HTTP {code} {phrase}{': ' + detail if detail else ''}")


def send(dataset, destination):
    """One attempt to deliver ``dataset`` (a pydicom Dataset) to ``destination``; never raises."""
    try:
        if destination.kind == DICOMWEB:
            return _stow_rs(dataset, destination)
        if destination.kind == DIMSE:
            return _c_store(dataset, destination)
        return _failed(False, f"destination {destination.name!r}: unknown kind {destination.kind!r} "
                              f"(expected {DICOMWEB!r} or {DIMSE!r})")
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise": a bug is a failure not worth retrying
        return _failed(False, f"{type(exc).__name__}: {exc}")


def _with_file_meta(dataset):
    """The dataset itself when its file meta names a transfer syntax; else a copy that does."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return dataset
    dataset = copy.copy(dataset)  # the caller's dataset is left as it was
    dataset.file_meta = FileMetaDataset(meta or {})
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


# --- STOW-RS ----------------------------------------------------------------------------------------

def _stow_rs(dataset, destination):
    url = f"{destination.url.rstrip('/')}/studies"
    buffer = io.BytesIO()
    dcmwrite(buffer, _with_file_meta(dataset), enforce_file_format=True)
    boundary = uuid.uuid4().hex
    body = b"".join([f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), buffer.getvalue(),
                     f"\r\n--{boundary}--\r\n".encode()])
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=destination.timeout,
                                 allow_redirects=False)
    except requests.Timeout:
        return _failed(True, f"STOW-RS {url}: no answer within {destination.timeout:g} s")
    except requests.ConnectionError as exc:
        return _failed(True, f"STOW-RS {url}: cannot connect ({_root_cause(exc)})")
    except requests.RequestException as exc:  # InvalidURL, MissingSchema, ...: the configuration
        return _failed(False, f"STOW-RS {url}: {type(exc).__name__}: {exc}")

    reasons = _failure_reasons(response)
    if reasons and (200 <= response.status_code <= 299 or response.status_code == 409):
        outcomes = [classify_dimse_status(reason) for reason in reasons]
        retry = all(outcome.retry for outcome in outcomes)
        return _failed(retry, f"STOW-RS {url}: HTTP {response.status_code}, FailedSOPSequence: "
                              + "; ".join(outcome.error for outcome in outcomes))
    if 300 <= response.status_code <= 399:
        return _failed(False, f"STOW-RS {url}: HTTP {response.status_code} redirect to "
                              f"{response.headers.get('Location', '?')} (check the destination URL)")
    outcome = classify_http_status(response.status_code, _error_detail(response))
    return outcome if outcome.sent else _failed(outcome.retry, f"STOW-RS {url}: {outcome.error}")


def _failure_reasons(response):
    """The FailureReason of every FailedSOPSequence item of a DICOM JSON answer ([] if none or unreadable)."""
    try:
        items = response.json().get("00081198", {}).get("Value", [])
        return [item.get("00081197", {}).get("Value", [0x0110])[0] for item in items]
    except (ValueError, AttributeError, IndexError, TypeError):
        return []


def _error_detail(response):
    try:
        answer = response.json()
        return str(answer.get("Message") or answer.get("OrthancError") or "") if isinstance(answer, dict) else ""
    except ValueError:
        return response.text[:200]


def _root_cause(exc):
    while exc.__context__ is not None:  # requests -> urllib3 -> the socket's own error
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"


# --- C-STORE --------------------------------------------------------------------------------------

def _c_store(dataset, destination):
    dataset = _with_file_meta(dataset)
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    syntaxes = [syntax]
    if not syntax.is_compressed:  # pynetdicom re-encodes between the uncompressed syntaxes
        syntaxes += [s for s in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) if s != syntax]
    ae = AE(ae_title=destination.calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = destination.timeout
    ae.add_requested_context(dataset.SOPClassUID, syntaxes)
    connected = []
    peer = f"{destination.ae_title}@{destination.host}:{destination.port}"

    def associate():
        connected.clear()
        return ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                            evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))])

    started = time.monotonic()
    assoc = associate()
    quick = time.monotonic() - started < destination.timeout / 2  # not a peer that never answers
    if not assoc.is_established and connected and quick and not assoc.is_rejected and not assoc.rejected_contexts:
        # Connected, then aborted with no answer: a peer that rejects and closes at once (Orthanc, for
        # a wrong called AE title) can lose its A-ASSOCIATE-RJ to the closed socket — seen once in six
        # test runs, which made a permanent refusal look like one worth retrying. Ask once more.
        assoc = associate()
    if not assoc.is_established:
        return _not_associated(assoc, peer, dataset, syntaxes, bool(connected))
    try:
        status = assoc.send_c_store(dataset)
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        return _failed(True, f"C-STORE to {peer}: no response (timeout or association aborted)")
    outcome = classify_dimse_status(status.Status, str(status.get("ErrorComment", "")))
    return outcome if outcome.sent else _failed(outcome.retry, f"C-STORE to {peer}: {outcome.error}")


def _not_associated(assoc, peer, dataset, syntaxes, connected):
    if assoc.is_rejected:
        answer = assoc.acceptor.primitive
        transient = getattr(answer, "result", None) == 0x02
        return _failed(transient, f"association rejected by {peer} ({getattr(answer, 'result_str', '?')}, "
                                  f"{getattr(answer, 'source_str', '?')}: {getattr(answer, 'reason_str', '?')})")
    if assoc.rejected_contexts and not assoc.accepted_contexts:
        return _failed(False, f"{peer} accepts no presentation context for SOP class {dataset.SOPClassUID} "
                              f"with {', '.join(syntaxes)}")
    if not connected:
        return _failed(True, f"cannot connect to {peer} (refused, unreachable or timed out)")
    return _failed(True, f"association with {peer} aborted or timed out")


def check_connection(destination):
    """Whether ``destination`` answers (an :class:`Outcome`, ``sent`` meaning "it answered"), sending nothing.

    C-STORE destinations: an association and a C-ECHO (Verification), refused or unanswered with the
    reason. DICOMweb: ``GET {url}/studies?limit=1`` (QIDO-RS) asking for DICOM JSON; any answer below 500
    but 401/403/404 shows the server is there (a STOW-only endpoint may not search).
    """
    if destination.kind == DIMSE:
        ae = AE(ae_title=destination.calling_ae)
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = destination.timeout
        ae.add_requested_context(Verification)
        peer = f"{destination.ae_title}@{destination.host}:{destination.port}"
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not assoc.is_established:
            if assoc.is_rejected:
                return _failed(False, f"C-ECHO to {peer}: association rejected (check the called AE title, and "
                                      f"that the PACS knows this calling AE title, {destination.calling_ae})")
            return _failed(True, f"C-ECHO to {peer}: no association (host, port, or the PACS is down)")
        try:
            status = assoc.send_c_echo()
        finally:
            if assoc.is_established:
                assoc.release()
        if "Status" not in status or status.Status != 0:
            return _failed(True, f"C-ECHO to {peer}: status {status.get('Status', 'none')}")
        return Outcome(sent=True, retry=False, error="")
    url = f"{destination.url.rstrip('/')}/studies"
    try:
        response = requests.get(url, params={"limit": 1}, headers={"Accept": "application/dicom+json"},
                                timeout=destination.timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return _failed(True, f"DICOMweb {url}: cannot connect ({_root_cause(exc)})")
    if response.status_code in (401, 403, 404) or response.status_code >= 500:
        return _failed(False, f"DICOMweb {url}: HTTP {response.status_code} {_error_detail(response)}".strip())
    return Outcome(sent=True, retry=False, error="")
