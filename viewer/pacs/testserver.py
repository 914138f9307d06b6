"""Orthanc as a test PACS: a JSON config with DICOMweb and HTTP authentication, started and stopped by its PID.
The ports are fixed: the PACS runs inside a private network namespace (see :mod:`viewer.pacs.netns`). Used by
the PACS tests and by the ``pacs`` benchmark suite; nothing here runs in the viewer itself.

Orthanc knows two peers of ours: ``OUR_AET`` (queries and retrieves; C-MOVE destination on ``MOVE_PORT``) and
``LISTEN_AET`` at ``LISTEN_PORT`` (the receiver of :mod:`viewer.pacs.listener`, the target of :meth:`Orthanc.push`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AET, DICOM_PORT, HTTP_PORT = "ORTHANC", 4243, 8043
OUR_AET, MOVE_PORT = "GRUVIEWER", 11113
LISTEN_MODALITY, LISTEN_AET, LISTEN_PORT = "listener", "GRULISTEN", 11114
USER, PASSWORD = "gru", "gru-test"
START_TIMEOUT_S = 10.0


def unavailable() -> str | None:
    """Why Orthanc cannot be started here, or None."""
    if shutil.which(ORTHANC) is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not os.path.exists(DICOMWEB_PLUGIN):
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def config(folder: Path) -> dict:
    return {
        "Name": "GRU-TEST-PACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [DICOMWEB_PLUGIN],
        "HttpPort": HTTP_PORT,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomAet": AET,
        "DicomPort": DICOM_PORT,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {
            "gruviewer": {
                "AET": OUR_AET,
                "Host": "127.0.0.1",
                "Port": MOVE_PORT,
                "AllowEcho": True,
                "AllowFind": True,
                "AllowGet": True,
                "AllowMove": True,
                "AllowStore": True,
            },
            LISTEN_MODALITY: {"AET": LISTEN_AET, "Host": "127.0.0.1", "Port": LISTEN_PORT},
        },
        "UnknownSopClassAccepted": False,
        "StableAge": 2,
        "SyncStorageArea": False,
        "MaximumPduLength": 131072,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Host": "127.0.0.1",
            "Ssl": False,
        },
    }


@dataclass
class Orthanc:
    process: subprocess.Popen
    folder: Path
    log_path: Path

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{HTTP_PORT}/dicom-web"

    def rest(self, path: str, method: str = "GET", body: bytes | None = None, timeout: float = 5.0) -> object:
        """A call to Orthanc's REST API (for checks a test makes behind the client's back)."""
        req = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{path}", data=body, method=method)
        req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=timeout) as rsp:
            data = rsp.read()
        return json.loads(data) if data else None

    def lookup(self, uid: str) -> str:
        """Orthanc's own ID of the study, series or instance with this UID.

        Raises
        ------
        KeyError
            Orthanc holds nothing with that UID.
        """
        found = self.rest("/tools/lookup", "POST", uid.encode())
        if not found:
            raise KeyError(uid)
        return str(found[0]["ID"])  # type: ignore[index]

    def push(self, uid: str, modality: str = LISTEN_MODALITY) -> object:
        """Have Orthanc C-STORE the study or series ``uid`` to a modality it knows (synchronously: the answer
        comes when every instance was sent, or with the failure)."""
        body = json.dumps({"Resources": [self.lookup(uid)], "Synchronous": True}).encode()
        return self.rest(f"/modalities/{modality}/store", "POST", body, timeout=60.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, graceful: bool = True) -> None:
        """Stop Orthanc and wait for it. ``graceful=False`` kills it at once, for a throwaway storage folder:
        a SIGTERM shutdown takes 2.4–4.9 s here, most of a short test session."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(folder: Path) -> Orthanc:
    """Start Orthanc (already inside the private namespace) and wait until it answers HTTP and DICOM.

    Raises
    ------
    RuntimeError
        It exited, or did not answer within :data:`START_TIMEOUT_S`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config(folder), indent=2))
    log_path = folder / "orthanc.log"
    env = dict(os.environ, TCP_NODELAY="1")  # DCMTK's switch: Debian's build leaves Nagle on
    with open(log_path, "wb") as log:
        process = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Orthanc(process, folder, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{server.log()[-2000:]}")
        try:
            server.rest("/system")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S:g} s:\n{server.log()[-2000:]}")
