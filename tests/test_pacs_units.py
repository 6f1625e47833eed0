"""PACS parts that need no server: node addresses, config file, dates, retrieve rules, the job store."""

from __future__ import annotations

import json
import os
import sqlite3
import threading

import pytest

from mfm_engine.pacs.dicomweb import _matches, server_filters
from mfm_engine.pacs.errors import NodeConfigError, PacsCancelled, PacsError, RetrieveError
from mfm_engine.pacs.jobs import JobStore
from mfm_engine.pacs.node import NodeSettings, derived_uid
from mfm_engine.pacs.nodes import (
    PacsConfig,
    config_path,
    default_cache_dir,
    load_config,
    parse_node,
    resolve_node,
    save_config,
    validate_ae_title,
)
from mfm_engine.pacs.query import Query, parse_date, parse_date_range
from mfm_engine.pacs.retrieve import MARKER, Receiver, cache_folder, cached_result, read_marker


# -- node addresses -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "aet", "host", "port"),
    [
        ("ORTHANC@127.0.0.1:4242", "ORTHANC", "127.0.0.1", 4242),
        ("  PACS_1@pacs.example.org:104 ", "PACS_1", "pacs.example.org", 104),
        ("A B@[::1]:11112", "A B", "::1", 11112),
    ],
)
def test_parse_dimse_node(text, aet, host, port):
    node = parse_node(text)
    assert (node.ae_title, node.host, node.port, node.is_dicomweb) == (aet, host, port, False)
    assert parse_node(node.address) == node


def test_parse_dicomweb_node():
    node = parse_node("http://127.0.0.1:8042/dicom-web/")
    assert node.is_dicomweb and node.url == "http://127.0.0.1:8042/dicom-web" and str(node) == node.url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ORTHANC", "is not AET@HOST:PORT"),
        ("ORTHANC@host", "is not AET@HOST:PORT"),
        ("@host:4242", "is not AET@HOST:PORT"),
        ("WAY_TOO_LONG_AE_TITLE@host:4242", "at most 16"),
        ("BAD\\AE@host:4242", "forbids"),
        ("PACS@host:70000", "outside 1..65535"),
        ("http://:8042/x", "no host"),
    ],
)
def test_bad_node_addresses_are_explained(text, message):
    with pytest.raises(NodeConfigError, match=message):
        parse_node(text)


def test_ae_title_rules():
    assert validate_ae_title("  MFM ") == "MFM"
    with pytest.raises(NodeConfigError, match="empty"):
        validate_ae_title("   ")
    with pytest.raises(NodeConfigError, match="forbids"):
        validate_ae_title("ÄRZTE")


# -- the config file ------------------------------------------------------------------------------
@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MFM_PACS_CONFIG", raising=False)
    return tmp_path


def test_config_lives_in_the_users_config_folder(xdg, monkeypatch):
    assert config_path() == xdg / "cfg" / "mfm-studio" / "pacs.json"
    assert default_cache_dir() == xdg / "cache" / "mfm-studio" / "pacs"
    cfg = load_config()  # no file yet: defaults
    assert cfg.calling_ae == "MFM" and cfg.nodes == {} and cfg.cache == default_cache_dir()
    cfg.nodes["pacs"] = "PACS@10.0.0.5:104"
    cfg.default_node = "pacs"
    cfg.calling_ae = "MFMSTUDIO"
    save_config(cfg)
    again = load_config()
    assert again.nodes == {"pacs": "PACS@10.0.0.5:104"} and again.calling_ae == "MFMSTUDIO"
    assert resolve_node(None, again) == parse_node("PACS@10.0.0.5:104", name="pacs")
    assert resolve_node("pacs", again).name == "pacs"
    assert resolve_node("OTHER@h:1", again).ae_title == "OTHER"
    monkeypatch.setenv("MFM_PACS_CONFIG", str(xdg / "elsewhere.json"))
    assert config_path() == xdg / "elsewhere.json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"nodes": {"x": "nonsense"}}', "node 'x' 'nonsense' is not AET@HOST:PORT"),
        ('{"calling_ae": 5}', "calling_ae must be a str"),
        ('{"default_node": "nope"}', "default_node 'nope' is not among the nodes"),
        ('{"colling_ae": "MFM"}', "unknown key"),
        ('{"move_port": 0}', "outside 1..65535"),
    ],
)
def test_malformed_config_names_file_and_problem(xdg, content, message):
    path = config_path()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(NodeConfigError, match=message) as info:
        load_config()
    assert str(path) in str(info.value)


def test_resolve_without_a_node_says_what_to_do(xdg):
    with pytest.raises(NodeConfigError, match="no node given: pass --node AET@HOST:PORT"):
        resolve_node(None, PacsConfig())
    with pytest.raises(NodeConfigError, match="neither AET@HOST:PORT"):
        resolve_node("orthanc", PacsConfig())


# -- queries --------------------------------------------------------------------------------------
def test_date_ranges():
    assert parse_date_range("20240101-20240131") == ("20240101", "20240131")
    assert parse_date_range("2024-01-01 to 2024-01-31") == ("20240101", "20240131")
    assert parse_date_range("20240101-") == ("20240101", "")
    assert parse_date_range("-20240131") == ("", "20240131")
    assert parse_date_range("2024-02-29") == ("20240229", "20240229")
    assert parse_date_range("") == ("", "")
    for bad, msg in [
        ("2023-02-29", "not a real date"),
        ("20240131-20240101", "after the end"),
        ("jan", "write"),
    ]:
        with pytest.raises(PacsError, match=msg):
            parse_date_range(bad)
    assert parse_date("2024-03-15") == "20240315"
    assert Query(date_from="20240101", date_to="20240131").date_range() == "20240101-20240131"
    assert Query(date_from="20240101", date_to="20240101").date_range() == "20240101"
    assert Query(date_to="20240101").date_range() == "-20240101"


def test_study_identifier_asks_for_every_return_key():
    ds = Query(patient_id="P1", modality="CT").study_identifier()
    assert ds.QueryRetrieveLevel == "STUDY" and ds.PatientID == "P1" and ds.ModalitiesInStudy == "CT"
    assert ds.StudyInstanceUID == "" and ds.NumberOfStudyRelatedInstances == ""


def test_qido_values_the_server_cannot_take_are_matched_here():
    send, check = server_filters({"PatientName": "DOE^J*", "PatientID": "ID 7/2", "StudyDate": "20240101-"})
    assert send == {"PatientName": "DOE*J*", "PatientID": "ID*7*2", "StudyDate": "20240101-"}
    assert check == {"PatientName": "DOE^J*", "PatientID": "ID 7/2"}
    assert _matches("Doe^John", "DOE^J*", fold_case=True)
    assert not _matches("DOEXJOHN", "DOE^J*", fold_case=True)
    assert _matches("ID 7/2", "ID 7/2", fold_case=False)
    assert not _matches("ID 7/22", "ID 7/2", fold_case=False)
    assert _matches("A[1]", "A[1]", fold_case=False)


# -- retrieve rules -------------------------------------------------------------------------------
def _receiver(target, expected=3, **kw):
    return Receiver(target, study_uid="1.2.3", series_uid="1.2.3.4", expected=expected, node="TEST@h:1",
                    method="C-GET", **kw)  # fmt: skip


def _put(rx, uid: str) -> bool:
    return rx.accept(uid, "1.2.3.4", lambda p: p.write_bytes(b"DICM" + uid.encode()))


def test_complete_retrieve_is_renamed_into_place_with_a_marker(tmp_path):
    rx = _receiver(tmp_path / "s")
    assert not (tmp_path / "s").exists() and rx.staging.name.startswith(".s.")
    for uid in ("1.1", "1.2", "1.3"):
        assert _put(rx, uid)
    result = rx.finish()
    assert result.n_instances == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    marker = read_marker(tmp_path / "s")
    assert marker["files"] == ["1.1.dcm", "1.2.dcm", "1.3.dcm"] and marker["expected"] == 3
    assert cached_result(tmp_path / "s").from_cache
    (tmp_path / "s" / "1.2.dcm").unlink()  # someone removed a file: not complete any more
    assert cached_result(tmp_path / "s") is None


@pytest.mark.parametrize(
    ("received", "failed", "error", "message"),
    [
        (2, 0, RetrieveError, "received 2 of the 3"),
        (3, 1, RetrieveError, "1 failed sub-operation"),
        (0, 0, RetrieveError, "brought no instances"),
    ],
)
def test_incomplete_retrieve_leaves_nothing(tmp_path, received, failed, error, message):
    rx = _receiver(tmp_path / "s")
    for k in range(received):
        _put(rx, f"1.{k + 1}")
    with pytest.raises(error, match=message):
        rx.finish(failed=failed)
    assert list(tmp_path.iterdir()) == []


def test_cancel_and_write_failures_stop_the_retrieve(tmp_path):
    cancel = threading.Event()
    rx = _receiver(tmp_path / "a", cancel=cancel)
    _put(rx, "1.1")
    cancel.set()
    assert not _put(rx, "1.2") and rx.stopped
    with pytest.raises(PacsCancelled, match="cancelled after 1 instance"):
        rx.finish()

    rx = _receiver(tmp_path / "b")

    def fail(path):
        raise OSError(28, "No space left on device")

    assert not rx.accept("1.1", "1.2.3.4", fail)
    with pytest.raises(RetrieveError, match="no space left on the device holding"):
        rx.finish()
    assert list(tmp_path.iterdir()) == []


def test_stale_staging_is_cleared_and_foreign_folders_refused(tmp_path):
    stale = tmp_path / ".s.0123456789ab.partial"
    stale.mkdir()
    (stale / "x.dcm").write_bytes(b"half")
    rx = _receiver(tmp_path / "s", expected=None)
    assert not stale.exists()
    _put(rx, "1.1")
    rx.finish()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(RetrieveError, match="holds no earlier retrieve"):
        _receiver(tmp_path / "mine", overwrite=True)
    with pytest.raises(RetrieveError, match="already holds a retrieve"):
        _receiver(tmp_path / "s")
    _receiver(tmp_path / "s", overwrite=True).discard()
    assert (tmp_path / "s" / MARKER).exists()  # an unfinished overwrite leaves the old retrieve alone


def test_cache_folder_takes_only_uids(tmp_path):
    assert cache_folder(tmp_path, "1.2", "1.2.3") == tmp_path / "1.2" / "1.2.3"
    for bad in ("..", "1.2/../../x", "", "1.2a"):
        with pytest.raises(RetrieveError, match="not a DICOM UID"):
            cache_folder(tmp_path, bad)


# -- the job store --------------------------------------------------------------------------------
def test_job_lifecycle_and_recovery(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job, new = store.record_instance("1.9", "1.9.1", "/f1", calling_ae="S", patient_hash="h", now=100.0)
    assert new and job.state == "receiving" and job.n_instances == 1
    _, new = store.record_instance("1.9", "1.9.1", "/f1", now=101.0)
    assert not new  # a resend is not a second instance
    store.record_instance("1.9", "1.9.2", "/f2", now=102.0)
    assert store.promote_quiet(5.0, now=106.0) == 0  # 4 s quiet: still receiving
    assert store.promote_quiet(5.0, now=107.0) == 1
    job = store.next_job()
    assert job.state == "received" and job.n_instances == 2
    job = store.update(job, state="translating")
    store.close()

    # A crash while translating: on restart the job is received again (its output is remade).
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert [j.state for j in store.recover()] == ["received"]
    job = store.update(store.next_job(), state="sending", output_dir="/out", next_attempt=0)
    # A late instance reopens the job with a new generation; the worker's stale update is dropped.
    store.record_instance("1.9", "1.9.3", "/f3", now=200.0)
    assert store.update(job, state="done") is None
    reopened = store.get("1.9")
    assert (reopened.state, reopened.generation, reopened.n_instances, reopened.output_dir) == (
        "receiving",
        2,
        3,
        "",
    )
    assert [u for u, _ in store.instances("1.9")] == ["1.9.1", "1.9.2", "1.9.3"]
    refused, new = store.refuse("2.1", "not a CT image")
    assert new and refused.state == "refused" and not store.refuse("2.1", "again")[1]
    store.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_derived_uids_are_stable_and_valid():
    a = derived_uid("series", "1.2.3|x")
    assert a == derived_uid("series", "1.2.3|x") != derived_uid("series", "1.2.3|y")
    assert a.startswith("2.25.") and len(a) <= 64 and all(c.isdigit() or c == "." for c in a)


def test_node_settings_need_an_allow_list(tmp_path):
    dest = parse_node("PACS@127.0.0.1:104")
    with pytest.raises(PacsError, match="allow-list"):
        NodeSettings(model="m", send_to=dest, state_dir=tmp_path)
    s = NodeSettings(model="m", send_to=dest, allow=["CT1 "], state_dir=tmp_path)
    assert s.allow == ["CT1"] and s.host == "127.0.0.1"
    with pytest.raises(NodeConfigError, match="at most 16"):
        NodeSettings(model="m", send_to=dest, allow_any=True, ae_title="X" * 17)


def test_config_file_is_written_atomically(xdg):
    cfg = PacsConfig(nodes={"a": "A@h:1"})
    path = save_config(cfg)
    assert json.loads(path.read_text())["nodes"] == {"a": "A@h:1"}
    assert [p.name for p in path.parent.iterdir()] == ["pacs.json"]
    assert not any(name.endswith(".tmp") for name in os.listdir(path.parent))


def test_node_with_a_missing_model_fails_before_creating_anything(tmp_path):
    from mfm_engine.errors import MFMError
    from mfm_engine.pacs.node import TranslationNode

    missing = tmp_path / "missing.safetensors"
    settings = NodeSettings(
        model=str(missing),
        send_to=parse_node("PACS@127.0.0.1:104"),
        allow=["CT1"],
        state_dir=tmp_path / "state",
    )
    with pytest.raises(MFMError, match="missing"):
        TranslationNode(settings).start()
    assert not (tmp_path / "state").exists()
