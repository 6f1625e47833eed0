"""The viewer's PACS dialogs against a real Orthanc, offscreen: Echo, query → retrieve → open, send.

Screenshots go to tests/_screenshots/ (the query dialog with results is also docs/pacs-query.png).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from orthanc_fixture import free_port, start_orthanc, write_test_series
from PySide6 import QtCore, QtWidgets

from mfm_engine.io.study import read_study
from mfm_viewer.main_window import MainWindow
from mfm_viewer.pacs_dialog import OpenFromPacsDialog, PacsNodesDialog
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"
OUR_AE = "MFMVIEW"
WAIT_MS = 60000


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pacsgui")
    move_port = free_port()
    server = start_orthanc(root / "orthanc", modalities={"viewer": (OUR_AE, "127.0.0.1", move_port)})
    try:
        art, study = write_test_series(root / "art", patient_id="GUI-1", patient_name="GAMMA^GUS", seed=21)
        write_test_series(
            root / "nat", study=study, phase="native", seed=22, description="NATIVE", series_number=3
        )
        write_test_series(root / "other", patient_id="GUI-2", patient_name="DELTA^DORA",
                          study_date="20230506", accession="ACC-GUI-2", seed=23)  # fmt: skip
        for name in ("art", "nat", "other"):
            server.upload(root / name)
        yield {
            "server": server,
            "move_port": move_port,
            "art": art,
            "study": study["study"]["StudyInstanceUID"],
        }
    finally:
        server.stop()


@pytest.fixture
def config(tmp_path, monkeypatch, pacs):
    """A PACS config in a temporary XDG_CONFIG_HOME naming the test Orthanc as the default node."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("MFM_PACS_CONFIG", raising=False)
    path = tmp_path / "cfg" / "mfm-studio" / "pacs.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "calling_ae": OUR_AE,
                "nodes": {"orthanc": pacs["server"].node, "orthanc-web": pacs["server"].web_url},
                "default_node": "orthanc",
                "move_port": pacs["move_port"],
                "move_host": "127.0.0.1",
                "cache_dir": str(tmp_path / "cache"),
            }
        )
    )
    return path


@pytest.fixture
def window(qtbot, tmp_path, config):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def idle(qtbot, dialog) -> None:
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=WAIT_MS)


def test_file_menu_has_the_pacs_actions(window):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "File")
    texts = [a.text().replace("&", "") for a in file_menu.actions()]
    i = texts.index("Open from PACS…")
    assert texts[i + 1 : i + 3] == ["Send synthetic to PACS…", "PACS nodes…"]
    assert texts.index("Recent studies") < i < texts.index("Open reference file…")


def test_query_retrieve_and_open(qtbot, window, pacs):
    dialog = window.pacs_actions.open_from_pacs()
    qtbot.addWidget(dialog)
    assert dialog.node_box.currentText() == "orthanc"
    dialog.modality.setCurrentIndex(dialog.modality.findData("CT"))
    dialog.search()
    idle(qtbot, dialog)
    assert dialog.tree.topLevelItemCount() == 2, dialog.status.text()
    dialog.patient_name.setText("GAMMA*")
    dialog.search()
    idle(qtbot, dialog)
    assert dialog.tree.topLevelItemCount() == 1
    study_item = dialog.tree.topLevelItem(0)
    assert study_item.text(1) == "GUI-1" and study_item.text(6) == "2"
    study_item.setExpanded(True)
    idle(qtbot, dialog)
    assert study_item.childCount() == 2
    assert [study_item.child(i).text(4) for i in range(2)] == ["ARTERIAL test series", "NATIVE"]
    dialog.tree.setCurrentItem(study_item.child(0))
    SHOTS.mkdir(exist_ok=True)
    assert dialog.grab().save(str(SHOTS / "pacs_query.png"))
    dialog.method.setCurrentIndex(dialog.method.findData("move"))
    with qtbot.waitSignal(dialog.opened, timeout=WAIT_MS) as opened:
        dialog.retrieve()
    folder = Path(opened.args[0])
    assert folder.parent.name == pacs["study"] and (folder / ".mfm-retrieve.json").exists()
    qtbot.waitUntil(lambda: window.session is not None, timeout=WAIT_MS)
    np.testing.assert_array_equal(window.session.input.hu, read_study(pacs["art"][0].parent).hu)
    assert not dialog.isVisible()  # opened: the dialog closed itself


def test_cancel_keeps_nothing_and_errors_are_plain(qtbot, window, pacs, tmp_path):
    dialog = OpenFromPacsDialog(parent=window)
    qtbot.addWidget(dialog)
    dialog.patient_id.setText("GUI-2")
    dialog.search()
    idle(qtbot, dialog)
    item = dialog.tree.topLevelItem(0)
    dialog.tree.setCurrentItem(item)  # the whole study

    # Cancel from inside the first progress report: deterministic, whatever the speed.
    def hook(worker):
        worker.progress.connect(
            lambda done, total: worker.cancel(), QtCore.Qt.ConnectionType.DirectConnection
        )

    dialog.started.connect(hook)
    dialog.retrieve()
    idle(qtbot, dialog)
    assert "cancelled" in dialog.status.text() and dialog.retrieved_folder is None
    assert not any((tmp_path / "cache").rglob("*.dcm"))
    dialog.started.disconnect(hook)

    dialog.dates.setText("2024-13-01")
    dialog.search()
    assert "not a real date" in dialog.status.text()
    dialog.node_box.setCurrentText(f"NOBODY@127.0.0.1:{free_port()}")
    dialog.dates.setText("")
    dialog.search()
    idle(qtbot, dialog)
    assert "Searching failed: cannot reach NOBODY@127.0.0.1" in dialog.status.text()


def test_nodes_dialog_echo_and_save(qtbot, window, pacs, config):
    dialog = window.pacs_actions.nodes()
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2
    row = dialog.add_row("web2", pacs["server"].web_url)
    dialog.table.setCurrentCell(row, 0)
    dialog.echo()
    idle(qtbot, dialog)
    assert "answered in" in dialog.status.text()
    row = dialog.add_row("dead", f"X@127.0.0.1:{free_port()}")
    dialog.table.setCurrentCell(row, 0)
    dialog.echo()
    idle(qtbot, dialog)
    assert "connection refused" in dialog.status.text()
    dialog.table.removeRow(row)
    dialog.default_node.setText("web2")
    dialog.save()
    saved = json.loads(config.read_text())
    assert saved["nodes"]["web2"] == pacs["server"].web_url and saved["default_node"] == "web2"
    bad = PacsNodesDialog(parent=window)
    qtbot.addWidget(bad)
    bad.add_row("broken", "not a node")
    bad.save()
    assert "is not AET@HOST:PORT" in bad.status.text()
    assert json.loads(config.read_text()) == saved  # nothing written


def test_send_synthetic_to_pacs(qtbot, window, pacs):
    from mfm_engine.checkpoint import save_checkpoint
    from mfm_engine.models.registry import build_model
    from mfm_engine.translate import Translator

    window.open_study(str(pacs["art"][0].parent))
    torch.manual_seed(0)
    cfg = {"name": "timeresnet", "preset": "tiny"}
    folder = Path(window.settings.qs.fileName()).parent
    ckpt = save_checkpoint(
        build_model(cfg), folder / "tiny", model_config=cfg, kind="flow", trained_on="untrained"
    )
    synthetic = Translator.from_checkpoint(ckpt, device="cpu").translate_volume(window.session.input, steps=1)
    window.session.set_synthetic(synthetic, None)
    dialog = window.pacs_actions.send_to_pacs()
    qtbot.addWidget(dialog)
    dialog.node_box.setCurrentText("orthanc-web")  # STOW-RS this time
    with qtbot.waitSignal(dialog.sent, timeout=WAIT_MS) as sent:
        dialog.send()
    assert sent.args[0].sent == 4
    server = pacs["server"]
    query = {"StudyInstanceUID": pacs["study"], "SeriesDescription": "SYNTHETIC*"}
    ids = server.rest("/tools/find", "POST", {"Level": "Series", "Query": query})
    assert len(ids) == 1
    instance = server.rest(f"/series/{ids[0]}/instances")[0]
    tags = server.instance_tags(instance["ID"])
    assert tags["0008,001c"] == "YES" and tags["0008,0008"].startswith("DERIVED")
    assert not list((Path(dialog.config.cache) / ".outbox").glob("*"))  # the temporary copy is gone
    uid = str(pydicom.dcmread(pacs["art"][0]).StudyInstanceUID)
    assert tags["0020,000d"] == uid


def test_send_without_synthetic_says_so(window):
    assert window.pacs_actions.send_to_pacs() is None
    assert "Translate the volume first" in window.last_message.text()


def test_broken_config_is_reported(window, config):
    config.write_text("{broken")
    assert window.pacs_actions.open_from_pacs() is None
    assert "not valid JSON" in window.last_message.text()
    QtWidgets.QApplication.processEvents()
