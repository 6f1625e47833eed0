"""``mfm-viewer``'s command line (issue 15, points 1 and 4): options, headless series choice,
direction, presets for heads, untouched settings, and the no-display message."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import shared_subfolder
from PySide6 import QtGui
from test_viewer_window import mini_study

from mfm_engine.errors import SeriesChoiceError
from mfm_engine.intensity import ALL_WINDOW_PRESETS
from mfm_engine.io.write import write_study
from mfm_viewer import app
from mfm_viewer.logic import qt_libs
from mfm_viewer.logic.series_choice import pick_largest_ct
from mfm_viewer.logic.study_info import head_reason, is_head
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui


@pytest.fixture
def seen(monkeypatch):
    """What the window showed when the screenshot was taken (the PNG itself is a stub)."""
    state: dict = {}

    def record(self, path):
        s = self.session
        state.update(
            path=s.input.meta.get("source_path") if s else None,
            meta=dict(s.input.meta) if s else {},
            direction=self.engine_panel.direction.currentData(),
            solver=self.engine_panel.solver.currentText(),
            steps=self.engine_panel.steps.value(),
            model=self.engine_panel.model.currentText(),
            window=self.cursor.window,
            region=self.window_toolbar.region,
            size=(self.width(), self.height()),
        )
        return QtGui.QImage(4, 4, QtGui.QImage.Format.Format_RGB32).save(str(path))

    monkeypatch.setattr(MainWindow, "save_screenshot", record)
    return state


def _run(tmp_path, *args) -> int:
    return app.main([*args, "--screenshot", str(tmp_path / "s.png"), "--settings", str(tmp_path / "v.ini")])


# -- options ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "big"], "is not a size"),
        (["--steps", "0"], "outside 1..200"),
        (["--solver", "nosuch"], "invalid choice"),
        (["--direction", "up"], "invalid choice"),
        (["--window", "nosuch"], "unknown window preset"),
        (["--series", "2"], "give the folder as PATH"),
    ],
)
def test_bad_options_fail_at_once_in_words(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_window_text_is_a_preset_or_width_over_level():
    assert app.parse_window("brain") == (80, 40)
    assert app.parse_window("Temporal bone") == (2800, 600)
    assert app.parse_window("350/-20") == (350.0, -20.0)


def test_options_reach_the_window(qapp, tmp_path, seen):
    contrast, _ = mini_study(shape=(4, 32, 32))
    path = write_study(contrast, tmp_path / "arterial.nii.gz")
    argv = ["--direction", "n2c", "--solver", "heun", "--steps", "3", "--window", "liver"]
    assert _run(tmp_path, str(path), *argv, "--size", "1280x720", "--model", "demo") == 0
    assert seen["meta"]["phase"] == "arterial"
    assert seen["direction"] == "n2c"  # the study is arterial, but the command line wins
    assert (seen["solver"], seen["steps"]) == ("heun", 3)
    assert seen["window"] == (150.0, 60.0)
    assert seen["size"] == (1280, 720)
    assert seen["model"].startswith("demo")


def test_saved_direction_is_kept_for_a_study_of_unknown_phase(qapp, tmp_path, seen):
    """The bug of issue 15: a saved n2c was overridden at start-up, so a native study went c2n."""
    native, _ = mini_study(shape=(4, 32, 32), phase="native")
    native.meta.pop("phase")  # as real NIfTI files come: no phase known
    path = write_study(native, tmp_path / "native.nii.gz", sidecar=False)
    settings = ViewerSettings(tmp_path / "v.ini")
    settings.set("engine/direction", "n2c")
    settings.sync()
    assert _run(tmp_path, str(path)) == 0
    assert seen["direction"] == "n2c"
    assert _run(tmp_path, str(path), "--direction", "c2n") == 0
    assert seen["direction"] == "c2n"


def test_screenshot_runs_leave_settings_and_recent_files_untouched(qapp, tmp_path, seen):
    study, _ = mini_study(shape=(4, 32, 32))
    path = write_study(study, tmp_path / "study.nii.gz")
    ini = tmp_path / "v.ini"
    settings = ViewerSettings(ini)
    settings.add_recent("studies", "/somewhere/else.nii.gz")
    settings.set("engine/solver", "rk4")
    settings.sync()
    before = ini.read_bytes()
    assert _run(tmp_path, str(path), "--solver", "euler", "--window", "bone") == 0
    assert ini.read_bytes() == before
    assert ViewerSettings(ini).recent("studies") == ["/somewhere/else.nii.gz"]


# -- series ------------------------------------------------------------------------------------------
@dataclass
class FakeSeries:
    modality: str
    n_slices: int
    rows: int = 512
    cols: int = 512
    transfer_syntax: str = ""
    description: str = ""
    key: str = ""
    uid: str = ""

    def summary(self) -> str:
        return f"{self.modality} {self.n_slices} {self.transfer_syntax}"


def test_largest_ct_series_is_chosen_or_the_choice_refused():
    series = [FakeSeries("CT", 3), FakeSeries("MR", 300), FakeSeries("CT", 120), FakeSeries("SEG", 1)]
    index, why = pick_largest_ct(series)
    assert index == 2 and "largest CT series" in why and "120 slice(s)" in why
    # Single images in several syntaxes: a lossless one.
    singles = [
        FakeSeries("CT", 1, transfer_syntax="JPEG 2000 Image Compression"),
        FakeSeries("CT", 1, transfer_syntax="RLE Lossless"),
    ]
    assert pick_largest_ct(singles)[0] == 1
    # Two different volumes of one size (e.g. two phases): nobody can guess; the list is given.
    with pytest.raises(SeriesChoiceError, match="same size"):
        pick_largest_ct([FakeSeries("CT", 80), FakeSeries("CT", 80)])


def test_headless_screenshot_of_a_folder_with_several_series_chooses_and_says_so(
    qapp, tmp_path, seen, capsys
):
    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    assert _run(tmp_path, str(folder)) == 0
    err = capsys.readouterr().err
    assert "chose the largest CT series" in err and "14 series in the folder" in err
    assert seen["meta"]["modality"] == "CT"


def test_series_by_index_and_by_uid(qapp, tmp_path, seen):
    from mfm_engine.io.study import discover_series

    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    series = discover_series(folder)
    assert _run(tmp_path, str(folder), "--series", "3") == 0
    assert seen["meta"]["dicom"]["series_instance_uid"] == series[3].uid
    assert _run(tmp_path, str(folder), "--series", series[0].uid) == 0
    assert seen["meta"]["dicom"]["series_instance_uid"] == series[0].uid


def test_a_wrong_series_fails_with_the_list_and_no_traceback(qapp, tmp_path, capsys):
    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    assert _run(tmp_path, str(folder), "--series", "99") == app.EXIT_FAILED
    err = capsys.readouterr().err
    assert "series index 99" in err and "[13]" in err and "Traceback" not in err


# -- presets -----------------------------------------------------------------------------------------
def test_head_or_body_rule():
    vol, _ = mini_study(shape=(4, 64, 64))  # 320 mm field of view
    assert not is_head(vol)
    vol.meta["dicom"] = {"body_part_examined": "HEAD"}
    assert head_reason(vol) == "BodyPartExamined HEAD"
    vol.meta["dicom"] = {"body_part_examined": "ABDOMEN"}
    vol.meta["series_description"] = "BRAIN routine"
    assert not is_head(vol)  # the tag wins over words
    vol.meta["dicom"] = {}
    assert is_head(vol)  # words, without a tag
    small, _ = mini_study(shape=(4, 100, 100), spacing=(2.4, 2.4, 5.0))  # 240 mm: head-sized
    small.meta["series_description"] = ""
    assert "field of view" in head_reason(small)


def test_head_study_gets_head_presets_and_every_preset_stays_reachable(qapp, tmp_path, seen):
    head, _ = mini_study(shape=(4, 64, 64))
    head.meta["series_description"] = "CT HEAD w/o"
    path = write_study(head, tmp_path / "head.nii.gz")
    assert _run(tmp_path, str(path)) == 0
    assert seen["region"] == "head" and seen["window"] == (80.0, 40.0)
    assert _run(tmp_path, str(path), "--window", "abdomen") == 0
    assert seen["window"] == (400.0, 40.0)


def test_more_menu_offers_every_preset(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "v.ini"))
    qtbot.addWidget(w)
    bar = w.window_toolbar
    menu_actions = bar.more_menu.actions()
    assert len(menu_actions) == len(ALL_WINDOW_PRESETS)
    temporal = next(a for a in menu_actions if a.text().startswith("temporal bone"))
    temporal.trigger()
    assert w.cursor.window == (2800.0, 600.0)
    assert bar.region == "body" and list(bar.actions_by_name)[0] == "abdomen"
    bar.set_region("head")
    assert list(bar.actions_by_name) == [
        "brain",
        "subdural",
        "stroke",
        "temporal bone",
        "bone",
        "soft tissue",
    ]
    assert w.cursor.window == (2800.0, 600.0)  # already a head preset: kept
    bar.actions_by_name["subdural"].trigger()
    assert w.cursor.window == (200.0, 80.0)
    bar.set_region("body")
    assert w.cursor.window == (400.0, 40.0)  # a body study brings the abdomen window back
    w.close()


# -- Qt's system libraries ---------------------------------------------------------------------------
LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x1)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
"""


def test_ldd_output_gives_the_missing_packages():
    assert qt_libs.parse_ldd(LDD) == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0")
    missing = qt_libs.MissingLibraries(qt_libs.Path("libqxcb.so"), qt_libs.parse_ldd(LDD))
    assert missing.apt_command() == "sudo apt-get install libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
    # Debian's naming rule for libraries not in the table.
    assert qt_libs.debian_package("libxcb-xinerama.so.0") == "libxcb-xinerama0"
    assert qt_libs.debian_package("libdbus-1.so.3") == "libdbus-1-3"
    assert qt_libs.debian_package("libglib-2.0.so.0") == "libglib2.0-0"


def test_this_machines_plugin_is_checked():
    missing = qt_libs.missing_xcb_libraries()
    if missing is None:
        pytest.skip("PySide6's xcb plugin or ldd is not here")
    assert missing.plugin.name == "libqxcb.so"
    assert all(lib.endswith(tuple(f".so.{n}" for n in range(10))) for lib in missing.libraries)


def test_no_display_message_names_the_missing_libraries(monkeypatch):
    fake = qt_libs.MissingLibraries(qt_libs.Path("libqxcb.so"), ("libxcb-icccm.so.4", "libxcb-keysyms.so.1"))
    monkeypatch.setattr(qt_libs, "missing_xcb_libraries", lambda: fake)
    text = app._no_display_message()
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in text
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in text
    assert "libxcb-cursor0" not in text
    monkeypatch.setattr(qt_libs, "missing_xcb_libraries", lambda: qt_libs.MissingLibraries(fake.plugin, ()))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "DISPLAY and WAYLAND_DISPLAY are unset" in app._no_display_message()
