"""A real Orthanc PACS for the PACS tests: a subprocess on loopback ports with a temporary storage folder.

`start_orthanc` writes a JSON config (DICOM AE/port, HTTP port, the DICOMweb plugin, the C-MOVE
destinations the test names) and waits until both ports answer. Tests skip with a clear reason when
the ``Orthanc`` binary (Debian package ``orthanc``) or the DICOMweb plugin (``orthanc-dicomweb``)
is absent. Also: small CT series to upload, written by the engine's own DICOM writer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mfm_engine.io.dicom_write import new_study_meta, write_dicom_series
from mfm_engine.volume import Volume

ORTHANC_AET = "ORTHANC"
PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
)


def orthanc_binary() -> str | None:
    """Path of the Orthanc server binary, or None."""
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None
    )


def dicomweb_plugin() -> str | None:
    """Path of Orthanc's DICOMweb plugin, or None."""
    for p in PLUGIN_CANDIDATES:
        if Path(p).exists():
            return p
    for p in sorted(Path("/usr").glob("**/libOrthancDicomWeb.so*")):
        return str(p)
    return None


def require_orthanc(dicomweb: bool = False) -> str:
    """The Orthanc binary; skips the test (with the package to install) when absent."""
    binary = orthanc_binary()
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb)")
    if dicomweb and dicomweb_plugin() is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class OrthancServer:
    """A running Orthanc: its ports, AE title, REST access, and how to stop it."""

    proc: subprocess.Popen
    dicom_port: int
    http_port: int
    folder: Path
    aet: str = ORTHANC_AET
    modalities: dict[str, Any] = field(default_factory=dict)

    @property
    def node(self) -> str:
        """``AET@127.0.0.1:PORT`` for the clients."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def web_url(self) -> str:
        """The DICOMweb base URL."""
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def rest(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Orthanc's REST API (an independent view of what the PACS holds)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def find_series(self, series_uid: str) -> list[str]:
        """Orthanc ids of the series with this SeriesInstanceUID."""
        return self.rest(
            "/tools/find", "POST", {"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}
        )

    def series_instances(self, series_uid: str) -> list[dict]:
        """Instances (with their main tags) of one series, via REST."""
        ids = self.find_series(series_uid)
        out: list[dict] = []
        for sid in ids:
            out += self.rest(f"/series/{sid}/instances")
        return out

    def all_series(self) -> list[dict]:
        """Every series Orthanc holds, with main tags."""
        return [self.rest(f"/series/{sid}") for sid in self.rest("/series")]

    def instance_tags(self, orthanc_id: str) -> dict:
        """The tags of one instance as {"gggg,eeee": value} (lower-case hex, no dictionary needed)."""
        return self.rest(f"/instances/{orthanc_id}/tags?short")

    def upload(self, folder: Path) -> int:
        """POST every file of a folder to /instances (independent of our C-STORE); returns how many."""
        n = 0
        for path in sorted(Path(folder).rglob("*.dcm")):
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/instances", data=path.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(req, timeout=30):
                n += 1
        return n

    def delete_series(self, series_uid: str) -> None:
        """Remove a series from Orthanc."""
        for sid in self.find_series(series_uid):
            self.rest(f"/series/{sid}", "DELETE")

    def stop(self) -> None:
        """Stop the server: SIGKILL, since its storage is a throw-away folder (SIGTERM takes seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        """The last lines of Orthanc's log, for failure messages."""
        try:
            return "\n".join((self.folder / "orthanc.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_orthanc(
    folder: Path,
    *,
    modalities: dict[str, tuple[str, str, int]] | None = None,
    dicomweb: bool = True,
    extra: dict[str, Any] | None = None,
) -> OrthancServer:
    """Start Orthanc with its storage in ``folder``; ``modalities`` name → (AET, host, port) for C-MOVE."""
    binary = require_orthanc(dicomweb)
    for attempt in range(3):  # a port picked as free may be taken by someone else before Orthanc binds it
        try:
            return _start(binary, folder / f"try{attempt}", modalities, dicomweb, extra)
        except OrthancStartError as exc:
            error = exc
    raise error


class OrthancStartError(RuntimeError):
    """Orthanc did not come up (its log tail is in the message)."""


def _start(
    binary: str,
    folder: Path,
    modalities: dict[str, tuple[str, str, int]] | None,
    dicomweb: bool,
    extra: dict[str, Any] | None,
) -> OrthancServer:
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config: dict[str, Any] = {
        "Name": "MFM-TEST",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomModalities": {name: list(m) for name, m in (modalities or {}).items()},
        "StorageCompression": False,
        "SaveJobs": False,
        "DicomScpTimeout": 30,
        "OverwriteInstances": False,
    }
    if dicomweb:
        config["Plugins"] = [dicomweb_plugin()]
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
    config.update(extra or {})
    cfg_path = folder / "orthanc.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    with open(folder / "orthanc.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([binary, str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    server = OrthancServer(proc, dicom_port, http_port, folder, modalities=dict(modalities or {}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OrthancStartError(f"Orthanc exited at start (code {proc.returncode}):\n{server.log_tail()}")
        if _port_open(dicom_port):
            try:
                server.rest("/system")
                return server
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
        time.sleep(0.1)
    server.stop()
    raise OrthancStartError(f"Orthanc did not start within 60 s:\n{server.log_tail()}")


# -- test series -------------------------------------------------------------------------------------
def ct_volume(n_slices: int = 4, size: int = 32, seed: int = 0, phase: str = "arterial") -> Volume:
    """A small CT-like volume: air, a soft-tissue body, a bright 'aorta' when arterial; integer HU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    base = np.where(r < size * 0.42, 40.0, -1000.0)
    aorta = np.hypot(yy - size * 0.45, xx - size * 0.55) < size * 0.08
    hu = np.repeat(base[None], n_slices, axis=0)
    hu[:, aorta] = 300.0 if phase == "arterial" else 45.0
    hu += np.rint(rng.normal(0, 8, hu.shape)) * (hu > -900)
    return Volume(
        hu.astype(np.float32), spacing=(0.8, 0.8, 2.5), origin=(-12.0, -12.0, 100.0), meta={"phase": phase}
    )


def write_test_series(
    folder: Path,
    *,
    patient_id: str = "MFM-PACS-1",
    patient_name: str = "TEST^PACS",
    study_date: str = "20240315",
    accession: str = "ACC001",
    study: dict | None = None,
    n_slices: int = 4,
    size: int = 32,
    seed: int = 0,
    phase: str = "arterial",
    description: str = "ARTERIAL test series",
    series_number: int = 2,
) -> tuple[list[Path], dict]:
    """Write one CT series (engine writer) into ``folder``; returns (files, the meta['dicom'] used).

    Pass the returned dict as ``study`` to put another series into the same study.
    """
    if study is None:
        study = new_study_meta(
            patient_name=patient_name, patient_id=patient_id, study_description="PACS TEST"
        )
        study["study"]["StudyDate"] = study_date
        study["study"]["AccessionNumber"] = accession
    vol = ct_volume(n_slices, size, seed, phase)
    vol.meta["dicom"] = study
    files = write_dicom_series(vol, folder, series_description=description, series_number=series_number)
    return files, study
