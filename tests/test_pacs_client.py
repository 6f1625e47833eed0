"""PACS client against a real Orthanc: echo, find, retrieve (C-GET, C-MOVE, WADO-RS), send, and failures.

The reference for "what the PACS holds" is what we uploaded through Orthanc's REST API (not our
C-STORE) and Orthanc's REST view of its own storage; the reference for pixels and headers is the
files we wrote before uploading.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from orthanc_fixture import ORTHANC_AET, free_port, start_orthanc, write_test_series

from mfm_engine.cli import main as mfm_main
from mfm_engine.io.dicom_write import write_dicom_series
from mfm_engine.io.study import describe_study, read_study
from mfm_engine.pacs import Query, connect, parse_node
from mfm_engine.pacs.dicomweb import DicomWebClient
from mfm_engine.pacs.dimse import DimseClient
from mfm_engine.pacs.errors import PacsCancelled, PacsConnectionError, PacsError, RetrieveError, StoreError
from mfm_engine.pacs.nodes import PacsConfig
from mfm_engine.pacs.retrieve import MARKER, cached_result, read_marker

OUR_AE = "MFMTEST"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A running Orthanc holding two studies (uploaded via REST), and what was uploaded."""
    root = tmp_path_factory.mktemp("pacs")
    move_port = free_port()
    server = start_orthanc(root / "orthanc", modalities={"mfm": (OUR_AE, "127.0.0.1", move_port)})
    try:
        src = root / "src"
        art, study_a = write_test_series(src / "a_art", patient_id="PAT-A", patient_name="ALPHA^ANN",
                                         study_date="20240315", accession="ACC-A", seed=1)  # fmt: skip
        nat, _ = write_test_series(src / "a_nat", study=study_a, phase="native", seed=2,
                                   description="NATIVE test series", series_number=3)  # fmt: skip
        b, study_b = write_test_series(src / "b_art", patient_id="PAT-B", patient_name="BETA^BOB",
                                       study_date="20231102", accession="ACC-B", seed=3,
                                       n_slices=6)  # fmt: skip
        n = sum(server.upload(src / name) for name in ("a_art", "a_nat", "b_art"))
        assert n == 14
        info = {
            "server": server,
            "move_port": move_port,
            "root": root,
            "study_a": study_a["study"]["StudyInstanceUID"],
            "study_b": study_b["study"]["StudyInstanceUID"],
            "art_files": art,
            "art_series": str(pydicom.dcmread(art[0]).SeriesInstanceUID),
            "nat_series": str(pydicom.dcmread(nat[0]).SeriesInstanceUID),
            "b_files": b,
            "b_series": str(pydicom.dcmread(b[0]).SeriesInstanceUID),
        }
        yield info
    finally:
        server.stop()


def dimse(pacs, **kw) -> DimseClient:
    kw.setdefault("calling_ae", OUR_AE)
    kw.setdefault("move_port", pacs["move_port"])
    kw.setdefault("move_host", "127.0.0.1")
    kw.setdefault("timeout", 20)
    return DimseClient(parse_node(pacs["server"].node), **kw)


def web(pacs) -> DicomWebClient:
    return DicomWebClient(parse_node(pacs["server"].web_url), timeout=20)


def by_sop(files) -> dict[str, pydicom.Dataset]:
    out = {}
    for f in files:
        ds = pydicom.dcmread(f)
        out[str(ds.SOPInstanceUID)] = ds
    return out


def assert_same_instances(folder: Path, originals: list[Path]) -> None:
    """Every original instance is in the folder with identical data set (pixels and every header)."""
    got = by_sop(sorted(folder.glob("*.dcm")))
    want = by_sop(originals)
    assert set(got) == set(want)
    for uid, ds in want.items():
        other = got[uid]
        assert other == ds  # all data elements, pixel data included (file meta is the sender's own)
        np.testing.assert_array_equal(other.pixel_array, ds.pixel_array)


# -- verification ---------------------------------------------------------------------------------
def test_echo_dimse_and_dicomweb(pacs):
    assert dimse(pacs).echo() >= 0
    assert web(pacs).echo() >= 0


# -- find -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [dimse, web], ids=["c-find", "qido-rs"])
def test_find_studies_by_each_key(pacs, make):
    client = make(pacs)
    a, b = pacs["study_a"], pacs["study_b"]

    def uids(**kw):
        return {s.study_uid for s in client.find_studies(Query(**kw))}

    assert uids(patient_id="PAT-A") == {a}
    assert uids(patient_name="BETA*") == {b}
    assert uids(date_from="20240101", date_to="20241231") == {a}
    assert uids(date_from="20231101", date_to="20231103") == {b}
    assert uids(date_to="20231231") == {b}
    assert uids(modality="CT") == {a, b}
    assert uids(modality="MR") == set()
    assert uids(accession="ACC-B") == {b}
    assert uids(study_uid=a) == {a}
    study = client.find_studies(Query(patient_id="PAT-A"))[0]
    assert (study.patient_name, study.study_date, study.accession) == ("ALPHA^ANN", "20240315", "ACC-A")
    assert study.modalities == ["CT"] and study.n_series == 2 and study.n_instances == 8


@pytest.mark.parametrize("make", [dimse, web], ids=["c-find", "qido-rs"])
def test_find_series_of_a_study(pacs, make):
    series = make(pacs).find_series(pacs["study_a"])
    assert [(s.series_uid, s.number, s.modality, s.n_instances) for s in series] == [
        (pacs["art_series"], 2, "CT", 4),
        (pacs["nat_series"], 3, "CT", 4),
    ]
    assert series[0].description == "ARTERIAL test series"


# -- retrieve -------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["get", "move", "wado"], ids=["c-get", "c-move", "wado-rs"])
def test_retrieve_series_identical_pixels_and_headers(pacs, tmp_path, how):
    client = web(pacs) if how == "wado" else dimse(pacs)
    options = {} if how == "wado" else {"method": how}
    seen = []
    result = client.retrieve_series(
        pacs["study_a"],
        pacs["art_series"],
        tmp_path / "series",
        progress=lambda d, t: seen.append((d, t)),
        **options,
    )
    assert result.n_instances == 4 and not result.from_cache
    assert result.method == {"get": "C-GET", "move": "C-MOVE", "wado": "WADO-RS"}[how]
    assert seen[-1] == (4, 4)
    assert_same_instances(tmp_path / "series", pacs["art_files"])
    marker = read_marker(tmp_path / "series")
    assert marker["expected"] == 4 and len(marker["files"]) == 4
    # The engine reads it like the original (SimpleITK-checked reader; the marker is hidden).
    np.testing.assert_array_equal(
        read_study(tmp_path / "series").hu, read_study(pacs["art_files"][0].parent).hu
    )
    assert [p.name for p in tmp_path.iterdir()] == ["series"]  # no staging left beside it


def test_retrieve_study_into_cache_then_reuse(pacs, tmp_path):
    client = dimse(pacs)
    target = tmp_path / "cache" / pacs["study_a"]
    result = client.retrieve_study(pacs["study_a"], target)
    assert result.n_instances == 8
    assert sorted(result.series_uids) == sorted([pacs["art_series"], pacs["nat_series"]])
    assert read_marker(target)["expected"] == 8
    doc = describe_study(target)  # what `mfm info` prints
    assert len(doc["series"]) == 2 and all(not e.get("error") for e in doc["series"])
    cached = cached_result(target / pacs["art_series"])
    assert cached is not None and cached.from_cache and cached.n_instances == 4
    # A second study retrieve reuses the complete series folders (same files, untouched).
    stamp = {p: p.stat().st_mtime_ns for p in target.rglob("*.dcm")}
    client.retrieve_study(pacs["study_a"], target)
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*.dcm")} == stamp
    with pytest.raises(RetrieveError, match="already holds a retrieve"):
        client.retrieve_series(pacs["study_a"], pacs["art_series"], target / pacs["art_series"])
    redo = client.retrieve_series(
        pacs["study_a"], pacs["art_series"], target / pacs["art_series"], overwrite=True
    )
    assert redo.n_instances == 4


def test_retrieve_refuses_a_foreign_folder(pacs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(RetrieveError, match="not empty and holds no earlier retrieve"):
        dimse(pacs).retrieve_series(pacs["study_a"], pacs["art_series"], tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("how", ["get", "move", "wado"], ids=["c-get", "c-move", "wado-rs"])
def test_retrieve_cancelled_midway_keeps_nothing(pacs, tmp_path, how):
    client = web(pacs) if how == "wado" else dimse(pacs)
    options = {} if how == "wado" else {"method": how}
    cancel = threading.Event()

    def progress(done, total):
        if done == 2:
            cancel.set()

    with pytest.raises(PacsCancelled, match="cancelled after 2 instance"):
        client.retrieve_series(
            pacs["study_b"], pacs["b_series"], tmp_path / "s", progress=progress, cancel=cancel, **options
        )
    assert list(tmp_path.iterdir()) == []  # no target, no staging
    # The same target works afterwards, complete.
    assert (
        client.retrieve_series(pacs["study_b"], pacs["b_series"], tmp_path / "s", **options).n_instances == 6
    )


def test_retrieve_with_a_failing_progress_callback_keeps_nothing(pacs, tmp_path):
    def boom(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dimse(pacs).retrieve_series(pacs["study_b"], pacs["b_series"], tmp_path / "s", progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_retrieve_cut_off_by_the_pacs_dying_keeps_nothing(tmp_path):
    """The PACS process is killed while it sends the 3rd of 6 instances: a plain error, nothing kept."""
    server = start_orthanc(tmp_path / "dying", dicomweb=False, modalities={"mfm": (OUR_AE, "127.0.0.1", 1)})
    try:
        files, study = write_test_series(tmp_path / "src", patient_id="PAT-D", seed=9, n_slices=6)
        server.upload(tmp_path / "src")
        client = DimseClient(parse_node(server.node), calling_ae=OUR_AE, timeout=10)

        def kill_pacs(done, total):
            if done == 2:
                server.stop()  # SIGKILL before it gets our answer for this instance

        with pytest.raises(
            RetrieveError, match="connection to .* was lost during the C-GET, cut off after 2"
        ):
            client.retrieve_series(
                study["study"]["StudyInstanceUID"],
                str(pydicom.dcmread(files[0]).SeriesInstanceUID),
                tmp_path / "out" / "s",
                progress=kill_pacs,
            )
        assert list((tmp_path / "out").iterdir()) == []
    finally:
        server.stop()


def test_retrieve_short_of_what_find_listed_is_not_complete(pacs, tmp_path):
    """A series that lost an instance between find and retrieve: 'received 3 of the 4', nothing kept."""
    server = pacs["server"]
    folder = tmp_path / "src"
    files, study = write_test_series(folder, patient_id="PAT-C", seed=7)
    server.upload(folder)
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    study_uid = study["study"]["StudyInstanceUID"]
    for make in (dimse, web):
        listed = make(pacs).find_series(study_uid)[0]
        assert listed.n_instances == 4
    victim = server.series_instances(series_uid)[0]["ID"]
    server.rest(f"/instances/{victim}", "DELETE")
    for i, make in enumerate((dimse, web)):
        with pytest.raises(RetrieveError, match="received 3 of the 4"):
            make(pacs).retrieve_series(study_uid, series_uid, tmp_path / f"r{i}", expected=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_retrieve_disk_full_midway(pacs, tmp_path):
    """The cache device fills up during a C-GET: a plain 'no space left' error, nothing kept."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full (a device that is always full) is not available")
    remaining = [str(ds.SOPInstanceUID) for ds in map(pydicom.dcmread, pacs["b_files"])]

    def fill_up(done, total):
        # From now on every new file lands on /dev/full, whose writes fail with ENOSPC.
        for staging in tmp_path.glob(".s.*.partial"):
            for uid in remaining:
                link = staging / f"{uid}.dcm"
                if not link.exists() and not link.is_symlink():
                    link.symlink_to("/dev/full")

    with pytest.raises(RetrieveError, match="no space left on the device"):
        dimse(pacs).retrieve_series(pacs["study_b"], pacs["b_series"], tmp_path / "s", progress=fill_up)
    assert list(tmp_path.iterdir()) == []


def test_move_to_an_unknown_destination_is_explained(pacs, tmp_path):
    client = dimse(pacs, move_ae="NOBODY")
    with pytest.raises(
        RetrieveError, match="refused the C-MOVE.*'NOBODY' as a C-MOVE destination, add NOBODY"
    ):
        client.retrieve_series(pacs["study_a"], pacs["art_series"], tmp_path / "s", method="move")
    assert list(tmp_path.iterdir()) == []


# -- send -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    from mfm_engine.checkpoint import save_checkpoint
    from mfm_engine.models.registry import build_model
    from mfm_engine.translate import Translator

    torch.manual_seed(0)
    cfg = {"name": "timeresnet", "preset": "tiny"}
    path = save_checkpoint(
        build_model(cfg),
        tmp_path_factory.mktemp("ckpt") / "tiny",
        model_config=cfg,
        kind="flow",
        trained_on="untrained test",
    )
    return Translator.from_checkpoint(path, device="cpu")


@pytest.mark.parametrize("make", [dimse, web], ids=["c-store", "stow-rs"])
def test_send_synthetic_series_and_find_it_marked(pacs, tmp_path, translator, make):
    client = make(pacs)
    got = client.retrieve_series(pacs["study_a"], pacs["art_series"], tmp_path / "in")
    source = read_study(got.folder)
    synthetic = translator.translate_volume(source, direction="c2n", solver="euler", steps=2)
    files = write_dicom_series(synthetic, tmp_path / "out", source=source)
    result = client.store(tmp_path / "out")
    assert result.sent == 4 and not result.failed
    new_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    try:
        found = {s.series_uid: s for s in client.find_series(pacs["study_a"])}
        assert new_uid in found and found[new_uid].n_instances == 4
        assert found[new_uid].description.startswith("SYNTHETIC")
        # Orthanc's own view of what it stored (by tag number: its dictionary may predate SyntheticData).
        instances = pacs["server"].series_instances(new_uid)
        assert len(instances) == 4
        for inst in instances:
            tags = pacs["server"].instance_tags(inst["ID"])
            assert tags["0008,001c"] == "YES"  # SyntheticData
            assert tags["0008,0008"].split("\\")[0] == "DERIVED"  # ImageType
            assert tags["0020,000d"] == pacs["study_a"] and tags["0010,0020"] == "PAT-A"
    finally:
        pacs["server"].delete_series(new_uid)


def test_send_refuses_non_dicom_before_connecting(pacs, tmp_path):
    (tmp_path / "x.txt").write_text("not dicom")
    for make in (dimse, web):
        with pytest.raises(StoreError, match="not a DICOM file"):
            make(pacs).store(tmp_path)
    with pytest.raises(StoreError, match="no such file or folder"):
        dimse(pacs).store(tmp_path / "missing")


# -- failures -------------------------------------------------------------------------------------
def test_unreachable_node(tmp_path):
    port = free_port()  # nothing listens there
    with pytest.raises(PacsConnectionError, match="cannot reach .*connection refused"):
        DimseClient(parse_node(f"{ORTHANC_AET}@127.0.0.1:{port}"), timeout=5).echo()
    with pytest.raises(PacsConnectionError, match="cannot reach .*connection refused"):
        DicomWebClient(parse_node(f"http://127.0.0.1:{port}/dicom-web"), timeout=5).find_studies(Query())


def test_wrong_ae_title_is_rejected_with_the_reason(pacs):
    node = parse_node(f"WRONGAET@127.0.0.1:{pacs['server'].dicom_port}")
    with pytest.raises(PacsConnectionError, match="rejected the association .*[Cc]alled AE.*'WRONGAET'"):
        DimseClient(node, calling_ae=OUR_AE, timeout=10).find_studies(Query())


def test_caller_unknown_to_the_pacs_is_told_why(pacs):
    """Orthanc answers queries only from known modalities: the message points at our AE title."""
    client = dimse(pacs, calling_ae="STRANGER")
    with pytest.raises(PacsConnectionError, match="STRANGER"):
        client.find_studies(Query())


def test_bad_uids_are_refused_before_any_network(pacs, tmp_path):
    with pytest.raises(PacsError, match="not a DICOM UID"):
        dimse(pacs).retrieve_series("../../etc", "1.2", tmp_path / "x")
    with pytest.raises(PacsError, match="not a DICOM UID"):
        web(pacs).find_series("1.2; DROP")


# -- command line ---------------------------------------------------------------------------------
@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MFM_PACS_CONFIG", raising=False)
    return tmp_path


def test_cli_echo_find_get_send(pacs, config_home, capsys):
    server = pacs["server"]
    common = ["--node", server.node, "--calling-ae", OUR_AE]
    assert mfm_main(["pacs", "echo", *common]) == 0
    assert "answered in" in capsys.readouterr().out

    assert mfm_main(["pacs", "find", *common, "--patient-id", "PAT-A", "--series", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["study_uid"] for s in doc["studies"]] == [pacs["study_a"]]
    assert {s["series_uid"] for s in doc["studies"][0]["series"]} == {pacs["art_series"], pacs["nat_series"]}

    assert mfm_main(["pacs", "find", *common, "--date", "20231101-20231130"]) == 0
    text = capsys.readouterr().out
    assert "PAT-B" in text and "PAT-A" not in text

    # get into the default cache (under XDG_CACHE_HOME), then `mfm info` opens it.
    args = ["pacs", "get", *common, "--study", pacs["study_b"], "--series", pacs["b_series"], "--quiet"]
    assert mfm_main(args) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == config_home / "cache" / "mfm-studio" / "pacs" / pacs["study_b"] / pacs["b_series"]
    assert (folder / MARKER).exists() and len(list(folder.glob("*.dcm"))) == 6
    assert mfm_main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["series"][0]["size_xyz"][2] == 6

    # a whole study with C-MOVE into --out
    out = config_home / "study"
    assert mfm_main(["pacs", "get", *common, "--study", pacs["study_a"], "--method", "move",
                     "--move-port", str(pacs["move_port"]), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert len(list(out.rglob("*.dcm"))) == 8

    # resending what the PACS holds is accepted, and it keeps one copy
    assert mfm_main(["pacs", "send", *common, str(folder), "--quiet"]) == 0
    assert "stored 6 instance(s)" in capsys.readouterr().out
    assert len(server.series_instances(pacs["b_series"])) == 6


def test_cli_named_nodes_and_dicomweb(pacs, config_home, capsys):
    server = pacs["server"]
    assert mfm_main(["pacs", "nodes", "--add", "orthanc", server.node, "--calling-ae", OUR_AE]) == 0
    assert mfm_main(["pacs", "nodes", "--add", "web", server.web_url, "--default", "web"]) == 0
    out = capsys.readouterr().out
    cfg_file = config_home / "config" / "mfm-studio" / "pacs.json"
    assert str(cfg_file) in out
    saved = json.loads(cfg_file.read_text())
    assert saved["nodes"] == {"orthanc": server.node, "web": server.web_url}
    assert saved["default_node"] == "web" and saved["calling_ae"] == OUR_AE
    # no --node: the default (DICOMweb) node
    assert mfm_main(["pacs", "find", "--accession", "ACC-A", "--json"]) == 0
    assert [s["study_uid"] for s in json.loads(capsys.readouterr().out)["studies"]] == [pacs["study_a"]]
    # by name, DIMSE, with the configured calling AE title
    assert mfm_main(["pacs", "find", "--node", "orthanc", "--accession", "ACC-B", "--json"]) == 0
    assert [s["study_uid"] for s in json.loads(capsys.readouterr().out)["studies"]] == [pacs["study_b"]]


def test_cli_errors_are_one_plain_line(pacs, config_home, capsys):
    port = free_port()
    assert mfm_main(["pacs", "echo", "--node", f"X@127.0.0.1:{port}", "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfm pacs: error: cannot reach X@127.0.0.1") and "Traceback" not in err
    assert mfm_main(["pacs", "echo", "--node", "nonsense"]) == 2
    assert "neither AET@HOST:PORT" in capsys.readouterr().err
    assert mfm_main(["pacs", "find", "--node", pacs["server"].node, "--date", "2024-13-01"]) == 2
    assert "not a real date" in capsys.readouterr().err
    assert mfm_main(["pacs", "echo"]) == 2
    assert "no node given" in capsys.readouterr().err
    assert (
        mfm_main(["pacs", "get", "--node", pacs["server"].web_url, "--study", "1.2", "--method", "move"]) == 2
    )
    assert "DIMSE only" in capsys.readouterr().err


def test_connect_picks_the_protocol(pacs):
    cfg = PacsConfig(calling_ae=OUR_AE)
    assert isinstance(connect(parse_node(pacs["server"].node), config=cfg), DimseClient)
    assert isinstance(connect(parse_node(pacs["server"].web_url), config=cfg), DicomWebClient)
