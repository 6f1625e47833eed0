"""Viewer benchmarks (issue 6 targets); prints a table. Runs offscreen; takes a minute or two.

    .venv/bin/python benchmarks/bench_viewer.py [--quick]

1. Live preview: from a control change (direction flipped, so nothing is cached) to the new
   512² synthetic slice on screen, 1 NFE, with the demo model (an untrained model of the same
   architecture when the demo weights are not shipped: the cost is the same).
2. Three-plane redraw while scrolling a 512×512×100 volume: frames per second with every view
   repainted synchronously each frame (input only: 3 views; all five panes: 15 views).
3. Opening a 300-slice 512² DICOM series: ``read_study`` and the viewer's File ▸ Open, against
   SimpleITK's ImageSeriesReader on the same files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6 import QtWidgets  # noqa: E402


def _app() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])


def _window(tmp: Path):
    from mfm_viewer.main_window import MainWindow
    from mfm_viewer.settings import ViewerSettings

    w = MainWindow(ViewerSettings(tmp / "bench.ini"))
    w.resize(1600, 1000)
    w.show()
    _app().processEvents()
    return w


def _paint(window) -> None:
    """Process pending events, then repaint every view now (what the user would see)."""
    app = _app()
    app.processEvents()
    for view in window.grid.views.values():
        view.viewport().repaint()


def _demo_checkpoint(tmp: Path) -> tuple[Path, str]:
    from mfm_engine.demo import demo_checkpoint

    path = demo_checkpoint()
    if path is not None:
        return path, "demo model"
    from mfm_engine.checkpoint import save_checkpoint
    from mfm_engine.models import build_model

    cfg = {"name": "timeresnet", "preset": "demo"}
    saved = save_checkpoint(
        build_model(cfg),
        tmp / "demo_arch",
        model_config=cfg,
        kind="flow",
        trained_on="untrained: benchmark stand-in",
    )
    return saved, "untrained model of the demo architecture (demo weights not shipped)"


def bench_preview(tmp: Path, repeats: int) -> tuple[list[float], str]:
    """Seconds from a direction change to the translated 512² slice painted."""
    from mfm_engine.phantom import make_phantom_pair

    pair = make_phantom_pair(900, motion_mm=0.0, n_slices=8)
    w = _window(tmp)
    w.set_study(pair.contrast, reference=pair.native)
    ckpt, what = _demo_checkpoint(tmp)
    assert w.open_checkpoint(ckpt), "could not open the checkpoint"
    app, panel = _app(), w.engine_panel
    while w.engine.preview_pending:  # warm-up: the first call builds kernels
        app.processEvents()
        time.sleep(0.001)
    times = []
    for _ in range(repeats):
        w.session.previews.clear()
        start = time.perf_counter()
        panel.direction.setCurrentIndex(1 - panel.direction.currentIndex())  # the control change
        while w.engine.preview_pending:
            app.processEvents()
            time.sleep(0.001)
        _paint(w)
        times.append(time.perf_counter() - start)
    w.close()
    return times, what


def bench_scroll(tmp: Path, frames: int, all_panes: bool) -> float:
    """Frames per second moving the crosshair one voxel along all three axes per frame."""
    from mfm_engine.volume import Volume
    from mfm_viewer.logic.engine_key import EngineKey

    rng = np.random.default_rng(0)
    hu = rng.normal(40, 200, (100, 512, 512)).astype(np.float32)
    vol = Volume(hu, (0.7, 0.7, 2.5), meta={"phase": "arterial"})
    w = _window(tmp)
    if all_panes:
        w.set_study(vol, reference=vol.with_hu(hu - 30, phase="native"))
        w.session.current_key = EngineKey("bench", "c2n", "euler", 1)
        w.session.set_synthetic(vol.with_hu(hu - 50, synthetic=True), w.session.current_key)
        w.grid.rebuild()
    else:
        w.set_study(vol)
    _paint(w)
    cursor = w.cursor
    start = time.perf_counter()
    for f in range(frames):
        step = 1 if (f // 40) % 2 == 0 else -1  # back and forth inside the volume
        i, j, k = cursor.ijk
        cursor.set_ijk((i + step, j + step, k + step))
        _paint(w)
    fps = frames / (time.perf_counter() - start)
    w.close()
    return fps


def bench_open_dicom(tmp: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds to open a 300-slice 512² series: read_study, the viewer's open, SimpleITK."""
    import SimpleITK as sitk

    from mfm_engine.io.dicom_write import write_dicom_series
    from mfm_engine.io.study import read_study
    from mfm_engine.volume import Volume

    folder = tmp / "series300"
    rng = np.random.default_rng(1)
    hu = np.clip(rng.normal(0, 300, (300, 512, 512)), -1024, 3000).astype(np.float32)
    write_dicom_series(
        Volume(hu, (0.7, 0.7, 1.0), meta={"modality": "CT"}), folder, series_description="bench"
    )
    w = _window(tmp)

    def sitk_read() -> None:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        sitk.GetArrayFromImage(reader.Execute())

    def viewer_open() -> None:
        assert w.open_study(folder)
        _paint(w)

    runs = {"SimpleITK": sitk_read, "read_study": lambda: read_study(folder), "viewer open": viewer_open}
    out: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):  # the order rotates, so that load and file cache treat all alike
        for name in names[r % 3 :] + names[: r % 3]:
            start = time.perf_counter()
            runs[name]()
            out[name].append(time.perf_counter() - start)
    w.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else 7
    _app()
    import torch

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        preview, what = bench_preview(tmp, repeats)
        fps3 = bench_scroll(tmp, 60 if args.quick else 200, all_panes=False)
        fps15 = bench_scroll(tmp, 30 if args.quick else 100, all_panes=True)
        opened = bench_open_dicom(tmp, 2 if args.quick else 6)
    med = {k: statistics.median(v) for k, v in opened.items()}
    rows = [
        ("live preview 512², 1 NFE (median)", f"{statistics.median(preview):.3f} s", "≤ 0.5 s"),
        ("live preview 512², 1 NFE (worst)", f"{max(preview):.3f} s", ""),
        ("scroll 512×512×100, 3 views", f"{fps3:.0f} fps", "≥ 30 fps"),
        ("scroll 512×512×100, 15 views (5 panes)", f"{fps15:.0f} fps", ""),
        ("open 300×512² DICOM: SimpleITK", f"{med['SimpleITK']:.2f} s", ""),
        (
            "open 300×512² DICOM: read_study",
            f"{med['read_study']:.2f} s ({med['read_study'] / med['SimpleITK']:.2f}×)",
            "≤ 1.3× SimpleITK",
        ),
        (
            "open 300×512² DICOM: viewer File ▸ Open",
            f"{med['viewer open']:.2f} s ({med['viewer open'] / med['SimpleITK']:.2f}×)",
            "",
        ),
    ]
    print(
        f"model: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<22}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<22}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
