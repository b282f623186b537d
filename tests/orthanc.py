"""A throw-away Orthanc PACS for the tests: DICOMweb plugin, DIMSE, basic authentication, its own
configuration and storage in a temporary folder, free ports on localhost, stopped at the end.

`start_orthanc(folder)` returns a running `Orthanc` or raises `OrthancUnavailable` (not installed, no
DICOMweb plugin, did not answer within `STARTUP_S`); the fixture turns that into a skip with the reason.
The Debian packages are `orthanc` and `orthanc-dicomweb` (the Makefile's SYS_PKGS).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")
STARTUP_S = 20.0
USER, PASSWORD = "gemini", "pacs-test-secret"
#: Our AE title and the port its C-MOVE storage service listens on (registered in Orthanc's modalities).
CALLING_AE = "GEMINI_CMR"


#: Instances whose SeriesDescription is REJECTED_DESCRIPTION are refused on arrival (an upload rejected by
#: the server, in the tests of partial uploads).
REJECTED_DESCRIPTION = "REJECT ME"
LUA_FILTER = f"""
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.SeriesDescription ~= '{REJECTED_DESCRIPTION}'
end
"""


class OrthancUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    process: subprocess.Popen
    folder: Path
    http_port: int
    dicom_port: int
    move_port: int

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://ORTHANC@127.0.0.1:{self.dicom_port}"

    def rest(self, path: str, method: str = "GET", data: bytes | None = None):
        """Orthanc's own REST API (checks and clean-up in the tests, not the product's protocol)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def series_of(self, study_uid: str) -> dict[str, dict]:
        """SeriesInstanceUID -> {modality, description, instances} for a study."""
        found = self.rest("/tools/find", "POST", json.dumps(
            {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}).encode())
        return {s["MainDicomTags"]["SeriesInstanceUID"]: {
            "modality": s["MainDicomTags"].get("Modality"), "description": s["MainDicomTags"].get("SeriesDescription"),
            "instances": len(s["Instances"])} for s in found}

    def delete_study(self, study_uid: str) -> None:
        for sid in self.rest("/tools/lookup", "POST", study_uid.encode()) or []:
            if sid["Type"] == "Study":
                self.rest(f"/studies/{sid['ID']}", "DELETE")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _plugin() -> str | None:
    for d in PLUGIN_DIRS:
        for name in ("libOrthancDicomWeb.so",):
            if (Path(d) / name).is_file():
                return str(Path(d) / name)
    return None


def start_orthanc(folder: Path) -> Orthanc:
    exe = shutil.which("Orthanc") or shutil.which("orthanc")
    if exe is None:
        raise OrthancUnavailable("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; "
                                 "make sysdeps)")
    plugin = _plugin()
    if plugin is None:
        raise OrthancUnavailable("the Orthanc DICOMweb plugin is not installed (Debian: orthanc-dicomweb)")
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port, move_port = free_port(), free_port(), free_port()
    config = {
        "Name": "gemini-cmr-tests", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "DicomModalities": {"gemini": [CALLING_AE, "127.0.0.1", move_port]},
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True, "DicomCheckCalledAet": False, "SaveJobs": False, "StableAge": 1,
        "HttpTimeout": 20, "DicomScpTimeout": 20,
    }
    (folder / "reject.lua").write_text(LUA_FILTER)
    config["LuaScripts"] = [str(folder / "reject.lua")]
    (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 (kept open for the server's life)
    proc = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(proc, folder, http_port, dicom_port, move_port)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (folder / "orthanc.log").read_text(errors="replace")[-400:]
            raise OrthancUnavailable(f"Orthanc exited at start-up (status {proc.returncode}): {tail}")
        try:
            server.rest("/dicom-web/studies")  # the plugin answers: ready
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    server.stop()
    raise OrthancUnavailable(f"Orthanc did not answer within {STARTUP_S:g} s")
