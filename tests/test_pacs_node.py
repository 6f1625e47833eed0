"""The translation node (`mfm node`, run as a subprocess) between a sender and a real Orthanc.

Covers: a contrast series in → a synthetic native series out at the PACS (pixels checked against the
Translator run here on the same input); non-CT refused; callers not on the allow-list and wrong AE
titles rejected; a series with a missing instance refused, then completed when it arrives; and
SIGKILL while receiving and while sending, after which the series still arrives exactly once.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from orthanc_fixture import free_port, start_orthanc, write_test_series
from pynetdicom import AE, StoragePresentationContexts, evt

from mfm_engine.io.study import read_study
from mfm_engine.pacs.dimse import DimseClient
from mfm_engine.pacs.errors import PacsConnectionError, StoreError
from mfm_engine.pacs.nodes import parse_node

PROJECT = Path(__file__).resolve().parents[1]
NODE_AE = "MFMNODE"
SENDER = "SCANNER"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
WAIT_S = 90.0


def wait_for(predicate, what: str, proc: NodeProcess | None = None, timeout: float = WAIT_S):
    """Poll until predicate() is truthy; fail with the node's log when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.proc is not None and proc.proc.poll() is not None:
            pytest.fail(
                f"the node exited (code {proc.proc.returncode}) while waiting for {what}:\n{proc.log()}"
            )
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{proc.log()}" if proc else ""))


class NodeProcess:
    """`python -m mfm_engine node ...` with its own state folder and port; stderr to a log file."""

    def __init__(self, folder: Path, checkpoint: Path, send_to: str, quiet: float = 0.3) -> None:
        self.folder = folder
        self.state = folder / "state"
        self.port = free_port()
        self.checkpoint = checkpoint
        self.send_to = send_to
        self.quiet = quiet
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def node(self) -> str:
        return f"{NODE_AE}@127.0.0.1:{self.port}"

    def client(self, calling_ae: str = SENDER) -> DimseClient:
        return DimseClient(parse_node(self.node), calling_ae=calling_ae, timeout=20)

    def start(self, quiet: float | None = None) -> None:
        self.runs += 1
        args = [
            sys.executable, "-m", "mfm_engine", "node", "--ae", NODE_AE, "--port", str(self.port),
            "--model", str(self.checkpoint), "--solver", "euler", "--steps", "2", "--device", "cpu",
            "--send-to", self.send_to, "--allow", SENDER, "OTHER",
            "--quiet-seconds", str(quiet or self.quiet),
            "--state", str(self.state), "--timeout", "20",
        ]  # fmt: skip
        with open(self.folder / f"node-{self.runs}.log", "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT)

        def ready() -> bool:
            try:
                self.client().echo()
                return True
            except PacsConnectionError:
                return False

        wait_for(ready, "the node to answer C-ECHO", self)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a power cut of the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("node-*.log")))

    def job(self, series_uid: str) -> dict | None:
        db = self.state / "jobs.sqlite3"
        if not db.exists():
            return None
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            conn.row_factory = sqlite3.Row
            try:
                row = conn.execute("SELECT * FROM jobs WHERE series_uid = ?", (series_uid,)).fetchone()
            except sqlite3.OperationalError:
                return None  # the schema is not there yet
        return dict(row) if row else None

    def wait_state(self, series_uid: str, states: tuple[str, ...], generation: int = 1) -> dict:
        return wait_for(
            lambda: (
                (j := self.job(series_uid)) and j["state"] in states and j["generation"] >= generation and j
            ),
            f"job of {series_uid} to reach {'/'.join(states)}",
            self,
        )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from mfm_engine.checkpoint import save_checkpoint
    from mfm_engine.models.registry import build_model

    torch.manual_seed(0)
    cfg = {"name": "timeresnet", "preset": "tiny"}
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(
        build_model(cfg), folder / "tiny", model_config=cfg, kind="flow", trained_on="untrained test"
    )


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("pacs") / "orthanc", dicomweb=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory, checkpoint, orthanc):
    proc = NodeProcess(tmp_path_factory.mktemp("node"), checkpoint, orthanc.node)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def synthetic_series_of(orthanc, study_uid: str) -> list[dict]:
    """The synthetic series Orthanc holds in a study (REST, wildcard on the description)."""
    ids = orthanc.rest(
        "/tools/find",
        "POST",
        {"Level": "Series", "Query": {"StudyInstanceUID": study_uid, "SeriesDescription": "SYNTHETIC*"}},
    )
    return [orthanc.rest(f"/series/{i}") for i in ids]


def series_uid_of(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0]).SeriesInstanceUID)


# -- the happy path ------------------------------------------------------------------------------
def test_contrast_series_in_synthetic_native_out(node, orthanc, checkpoint, tmp_path):
    files, study = write_test_series(tmp_path / "in", patient_id="PAT-NODE-1", seed=11)
    source_uid = series_uid_of(files)
    assert node.client().store(tmp_path / "in").sent == 4
    job = node.wait_state(source_uid, ("done", "refused", "failed"))
    assert job["state"] == "done", job["reason"]
    assert job["translations"] == 1 and job["sends_completed"] == 1

    study_uid = study["study"]["StudyInstanceUID"]
    found = synthetic_series_of(orthanc, study_uid)
    assert len(found) == 1
    assert found[0]["MainDicomTags"]["SeriesInstanceUID"] == job["output_series_uid"]
    instances = orthanc.rest(f"/series/{found[0]['ID']}/instances")
    assert len(instances) == 4
    source_sops = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    referenced = set()
    for inst in instances:
        tags = orthanc.instance_tags(inst["ID"])
        assert tags["0008,001c"] == "YES"  # SyntheticData
        assert tags["0008,0008"].startswith("DERIVED")  # ImageType
        assert tags["0010,0020"] == "PAT-NODE-1" and tags["0020,000d"] == study_uid
        referenced.add(tags["0008,2112"][0]["0008,1155"])  # SourceImageSequence → ReferencedSOPInstanceUID
    assert referenced == source_sops

    # Pixels: what the Translator makes here from the same input, with the same settings.
    from mfm_engine.translate import Translator

    got_dir = tmp_path / "got"
    got_dir.mkdir()
    for inst in instances:
        (got_dir / f"{inst['ID']}.dcm").write_bytes(orthanc_file(orthanc, inst["ID"]))
    got = read_study(got_dir)
    expected = Translator.from_checkpoint(checkpoint, device="cpu").translate_volume(
        read_study(tmp_path / "in"), direction="c2n", solver="euler", steps=2
    )
    np.testing.assert_allclose(got.hu, np.rint(expected.hu), atol=1.0)

    # One log line for the job, with the patient id hashed, never printed.
    log = node.log()
    lines = [
        line for line in log.splitlines() if re.search(rf"job \d+ \w+: series {re.escape(source_uid)}", line)
    ]
    assert len(lines) == 1 and " done: " in lines[0]
    assert f"patient #{job['patient_hash']}" in lines[0] and len(job["patient_hash"]) == 12
    assert "PAT-NODE-1" not in log


def orthanc_file(orthanc, orthanc_id: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{orthanc.http_port}/instances/{orthanc_id}/file") as resp:
        return resp.read()


# -- refusals ------------------------------------------------------------------------------------
def test_non_ct_series_is_refused_with_the_reason_logged(node, orthanc, tmp_path):
    files, study = write_test_series(tmp_path / "mr", patient_id="PAT-NODE-MR", seed=12)
    for f in files:  # the same images, declared MR
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(StoreError, match="refused 4 of 4 .*translates CT images only"):
        node.client().store(tmp_path / "mr")
    uid = series_uid_of(files)
    job = node.job(uid)
    assert job["state"] == "refused" and "not a CT image (modality MR" in job["reason"]
    wait_for(
        lambda: re.search(rf"job \d+ refused: series {re.escape(uid)}", node.log()),
        "the refusal log line",
        node,
    )
    assert len(re.findall(rf"job \d+ refused: series {re.escape(uid)}", node.log())) == 1
    assert synthetic_series_of(orthanc, study["study"]["StudyInstanceUID"]) == []
    assert not (node.state / "incoming" / uid).exists()  # nothing of it was stored


def test_caller_not_on_the_allow_list_is_rejected(node, tmp_path):
    write_test_series(tmp_path / "x", seed=13)
    with pytest.raises(PacsConnectionError, match="rejected the association .*[Cc]alling AE"):
        node.client(calling_ae="INTRUDER").store(tmp_path / "x")
    expected = "rejected an association from INTRUDER at 127.0.0.1: calling AE title 'INTRUDER' is not on"
    wait_for(lambda: expected in node.log(), "the rejection log line", node)


def test_wrong_called_ae_title_is_rejected(node):
    client = DimseClient(parse_node(f"NOTMFM@127.0.0.1:{node.port}"), calling_ae=SENDER, timeout=10)
    with pytest.raises(PacsConnectionError, match="rejected the association .*[Cc]alled AE.*'NOTMFM'"):
        client.echo()
    wait_for(
        lambda: "it called AE title 'NOTMFM', not this node's 'MFMNODE'" in node.log(), "the log line", node
    )


def test_series_with_a_missing_instance_waits_for_it(node, orthanc, tmp_path):
    """Refused while a slice is missing (reason logged); complete once it arrives; nothing lost."""
    files, study = write_test_series(tmp_path / "all", patient_id="PAT-NODE-GAP", seed=14, n_slices=6)
    uid = series_uid_of(files)
    missing = files[3]
    assert node.client().store([f for f in files if f != missing]).sent == 5
    job = node.wait_state(uid, ("refused", "done", "failed"))
    assert job["state"] == "refused" and "missing instances" in job["reason"]
    assert synthetic_series_of(orthanc, study["study"]["StudyInstanceUID"]) == []
    node.client().store(missing)
    job = node.wait_state(uid, ("done", "failed"), generation=2)
    assert job["state"] == "done", job["reason"]
    found = synthetic_series_of(orthanc, study["study"]["StudyInstanceUID"])
    assert len(found) == 1 and len(found[0]["Instances"]) == 6


# -- crashes -------------------------------------------------------------------------------------
class Gate:
    """A storage SCP between the node and Orthanc: forwards each instance, and can hold one."""

    def __init__(self, orthanc, hold_at: int) -> None:
        self.orthanc = orthanc
        self.hold_at = hold_at
        self.count = 0
        self.reached = threading.Event()
        self.release = threading.Event()
        self.port = free_port()
        ae = AE(ae_title="GATE")
        ae.supported_contexts = StoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.handle)]
        )

    @property
    def node(self) -> str:
        return f"GATE@127.0.0.1:{self.port}"

    def handle(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        forward = AE(ae_title="GATE")
        forward.add_requested_context(ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID))
        assoc = forward.associate("127.0.0.1", self.orthanc.dicom_port, ae_title=self.orthanc.aet)
        status = assoc.send_c_store(ds)
        assoc.release()
        self.count += 1
        if self.count == self.hold_at:
            self.reached.set()
            self.release.wait(WAIT_S)  # the node is killed while this instance is unanswered
        return int(status.Status)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.mark.slow  # three node start-ups (each imports torch)
def test_sigkill_while_receiving_and_while_sending_delivers_exactly_once(tmp_path, checkpoint, orthanc):
    gate = Gate(orthanc, hold_at=2)
    proc = NodeProcess(tmp_path / "crash", checkpoint, gate.node)
    (tmp_path / "crash").mkdir()
    try:
        files, study = write_test_series(tmp_path / "in", patient_id="PAT-NODE-CRASH", seed=15)
        uid = series_uid_of(files)
        study_uid = study["study"]["StudyInstanceUID"]

        # 1. Killed while the series is still 'receiving' (long quiet time): acknowledged instances survive.
        proc.start(quiet=600)
        assert proc.client().store(tmp_path / "in").sent == 4
        assert proc.job(uid)["state"] == "receiving"
        proc.kill()

        # 2. Restarted: it translates and sends; killed while the gate holds the 2nd instance.
        proc.start()
        assert gate.reached.wait(WAIT_S), proc.log()
        assert proc.job(uid)["state"] == "sending"
        proc.kill()
        gate.hold_at = 0
        gate.release.set()
        partial = synthetic_series_of(orthanc, study_uid)
        assert len(partial) == 1 and len(partial[0]["Instances"]) == 2

        # 3. Restarted: it resends the same (derived) UIDs, so the PACS ends up with one complete copy.
        proc.start()
        job = proc.wait_state(uid, ("done", "failed"))
        assert job["state"] == "done", job["reason"]
        assert job["translations"] == 1  # the synthetic series was made once and resent, not remade
        assert job["send_attempts"] == 2 and job["sends_completed"] == 1
        found = synthetic_series_of(orthanc, study_uid)
        assert len(found) == 1 and len(found[0]["Instances"]) == 4
        assert found[0]["MainDicomTags"]["SeriesInstanceUID"] == job["output_series_uid"]
        assert len(re.findall(rf"job \d+ done: series {re.escape(uid)}", proc.log())) == 1
    finally:
        proc.stop()
        gate.close()
