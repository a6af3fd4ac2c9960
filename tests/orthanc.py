"""A real Orthanc (Debian's /usr/sbin/Orthanc with its DICOMweb plugin) for the PACS tests.

Why a real one: the send rules hang on what a PACS actually answers (association rejected for a
wrong called AE title, STOW-RS status codes and FailedSOPSequence, C-STORE statuses), and a fake
would only repeat our own reading of the standard.

    orthanc = start_orthanc(tmp_path, modalities={"pneumoweb": ["PNEUMOWEB", "127.0.0.1", 11112]})
    try:
        ...  # orthanc.dicomweb_url, orthanc.dicom_port, orthanc.aet, orthanc.instances(), ...
    finally:
        orthanc.stop()

Everything lives in ``tmp_dir``: ``orthanc.json`` (the configuration, free ports picked at start),
``storage/`` (files and SQLite index) and ``orthanc.log`` (appended to by every start).
``orthanc.stop()`` then ``orthanc.start()`` restarts it with the same ports and the same storage.
To run one by hand after a failed test, with the data it had:

    /usr/sbin/Orthanc <tmp_dir>/orthanc.json      # Ctrl-C stops it; the log goes to stderr

A missing Orthanc skips the tests locally and fails them under CI=true (as ``tests.servers``).
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .servers import in_ci

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_orthanc():
    for path in (ORTHANC, DICOMWEB_PLUGIN):
        if not path.exists():
            message = f"{path} is missing (Debian packages orthanc, orthanc-dicomweb)"
            if in_ci():
                pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
            pytest.skip(message)


def start_orthanc(tmp_dir, *, modalities=None, aet="ORTHANC", dicomweb_servers=None):
    """Write a configuration into ``tmp_dir``, start Orthanc and wait until its REST API answers.

    ``dicomweb_servers``: the DICOMweb plugin's ``Servers`` (name → {"Url", "HttpHeaders"}), which its own
    STOW-RS client sends to (``POST /dicom-web/servers/{name}/stow``), on the plugin's default settings.
    """
    require_orthanc()
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "storage").mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "pneumoweb-test-pacs",
        "StorageDirectory": str(tmp_dir / "storage"),
        "IndexDirectory": str(tmp_dir / "storage"),
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Servers": dicomweb_servers or {}},
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected at association
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": modalities or {},
        "DicomScuTimeout": 10,
        "DicomAssociationCloseDelay": 0,  # release outgoing associations at once (default: 5 s later)
        "StableAge": 1,
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "SyncStorageArea": False,  # no fsync per file: tests need speed, not crash safety
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
    }
    config_path = tmp_dir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    return Orthanc(config_path).start()


class Orthanc:
    """One Orthanc process and its REST API; ``stop()`` and ``start()`` may be called again."""

    def __init__(self, config_path):
        self.config_path = Path(config_path)
        config = json.loads(self.config_path.read_text())
        self.log_path = self.config_path.parent / "orthanc.log"
        self.http_url = f"http://127.0.0.1:{config['HttpPort']}"
        self.dicomweb_url = f"{self.http_url}/dicom-web"
        self.dicom_port = config["DicomPort"]
        self.aet = config["DicomAet"]
        self.process = None
        self.http = requests.Session()

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, timeout=30):
        if self.process and self.process.poll() is None:
            raise RuntimeError(f"Orthanc is already running (pid {self.pid})")
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            mark = log.tell()
            self.process = subprocess.Popen([str(ORTHANC), str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self._fail(f"Orthanc exited with status {self.process.returncode} while starting")
            if self._answers(mark):
                return self
            if time.monotonic() > deadline:
                self.stop()
                self._fail(f"Orthanc did not answer {self.http_url}/system within {timeout} s")
            time.sleep(0.1)

    def _answers(self, mark):
        # The log line proves that *this* process is up, not another server on the port.
        with open(self.log_path, "rb") as log:
            log.seek(mark)
            if b"Orthanc has started" not in log.read():
                return False
        try:
            self.http.get(f"{self.http_url}/system", timeout=1).raise_for_status()
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                return True
        except (requests.RequestException, OSError):
            return False

    def _fail(self, message):
        log = self.log_path.read_text(errors="replace")[-5000:]
        raise AssertionError(f"{message}; the end of {self.log_path}:\n{log}")

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if not self.process or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            return self.process.wait(10)

    # --- REST API --------------------------------------------------------------------------------

    def get(self, path, **params):
        """GET a REST path: its JSON, or its text (e.g. ``/instances/{id}/metadata/RemoteAET``)."""
        response = self.http.get(f"{self.http_url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("Content-Type", "") else response.text

    def post(self, path, body):
        response = self.http.post(f"{self.http_url}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def changes(self):
        """Every entry of ``/changes`` (``ChangeType``, ``ResourceType``, ``ID``, ``Seq``, ...), oldest first."""
        entries, since = [], 0
        while True:
            page = self.get("/changes", since=since, limit=100)
            entries += page["Changes"]
            since = page["Last"]
            if page["Done"]:
                return entries

    def instances(self):
        """Orthanc's identifiers of the instances it holds."""
        return self.get("/instances")

    def find(self, level, query, expand=False):
        """``/tools/find``: e.g. ``find("Instance", {"SOPInstanceUID": uid})`` -> Orthanc ids."""
        return self.post("/tools/find", {"Level": level, "Query": query, "Expand": expand})

    def store_to(self, modality, orthanc_ids):
        """C-STORE the resources to a ``DicomModalities`` entry, synchronously.

        Returns the ``requests.Response`` unchecked: a test of a failing push wants its status.
        """
        return self.http.post(f"{self.http_url}/modalities/{modality}/store",
                              json={"Resources": list(orthanc_ids), "Synchronous": True}, timeout=60)

    def upload(self, dicom_bytes):
        """POST a DICOM file to ``/instances``: ``{"ID": ..., "Status": "Success" | "AlreadyStored", ...}``."""
        response = self.http.post(f"{self.http_url}/instances", data=dicom_bytes,
                                  headers={"Content-Type": "application/dicom"}, timeout=60)
        response.raise_for_status()
        return response.json()

    def qido_instances(self, **params):
        """QIDO-RS ``/dicom-web/instances?Modality=SR...``: a list of DICOM JSON objects."""
        response = self.http.get(f"{self.dicomweb_url}/instances", params=params,
                                 headers={"Accept": "application/dicom+json"}, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else []
