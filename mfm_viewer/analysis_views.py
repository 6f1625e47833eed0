"""View ▸ Solver comparison… and View ▸ 3D iodine view: hooked onto a MainWindow from outside.

``install(window)`` adds the two menu actions and creates each view the first time it is asked for
(so a window that never opens them pays nothing: no extra thread, no OpenGL probe). The solver grid
is its own top-level window; the 3D view is a dock of the main window. Both read the window's
session, cursor and engine, and are shut down when the window closes.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets


class AnalysisViews(QtCore.QObject):
    """The solver grid and the 3D view of one main window, made on demand."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.solver_grid: Any = None
        self.view3d: Any = None
        self.dock3d: QtWidgets.QDockWidget | None = None
        window.installEventFilter(self)
        engine = getattr(window, "engine", None)
        if engine is not None:
            engine.synthetic_changed.connect(self._on_synthetic_changed)

    # -- the solver grid ----------------------------------------------------------------------
    def show_solver_grid(self) -> Any:
        """Open (or raise) the solver comparison window."""
        from mfm_viewer.solver_grid import SolverGridView, context_for

        if self.solver_grid is None:
            self.solver_grid = SolverGridView(self.window.cursor, context_for(self.window))
            self.solver_grid.setWindowFlag(QtCore.Qt.WindowType.Window, True)
        self.solver_grid.show()
        self.solver_grid.raise_()
        return self.solver_grid

    # -- the 3D view --------------------------------------------------------------------------
    def show_3d(self) -> Any:
        """Show the 3D iodine dock (created on first use)."""
        from mfm_viewer.view3d import Iodine3DView

        if self.view3d is None:
            engine = getattr(self.window, "engine", None)
            self.view3d = Iodine3DView(
                self.window.cursor,
                lambda: self.window.session,
                translate_volume=engine.translate_volume if engine is not None else None,
            )
            dock = QtWidgets.QDockWidget("3D iodine", self.window)
            dock.setObjectName("view3d_dock")
            dock.setWidget(self.view3d)
            self.window.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self.dock3d = dock
            first = True
        else:
            first = False
        self.dock3d.show()
        self.dock3d.raise_()
        if first:
            # Room for the picture: a wider right column, about half its height below the engine panel.
            w = self.window
            w.resizeDocks([self.dock3d], [max(460, w.width() // 3)], QtCore.Qt.Orientation.Horizontal)
            w.resizeDocks([self.dock3d], [max(380, w.height() // 2)], QtCore.Qt.Orientation.Vertical)
        return self.view3d

    def _on_synthetic_changed(self) -> None:
        if self.view3d is not None and self.view3d.isVisible():
            self.view3d.refresh()
        if self.solver_grid is not None and self.solver_grid.isVisible():
            self.solver_grid.refresh()

    # -- life cycle ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Join the grid's worker and release the 3D context (the window is closing)."""
        if self.solver_grid is not None:
            self.solver_grid.shutdown()
            self.solver_grid.close()
        if self.view3d is not None:
            self.view3d.shutdown()

    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802
        if obj is self.window and ev.type() == QtCore.QEvent.Type.Close:
            self.shutdown()
        return False


def _view_menu(window: QtWidgets.QMainWindow) -> QtWidgets.QMenu:
    for action in window.menuBar().actions():
        menu = action.menu()
        if menu is not None and action.text().replace("&", "") == "View":
            return menu
    return window.menuBar().addMenu("&View")


def install(window: QtWidgets.QMainWindow) -> AnalysisViews:
    """Add View ▸ Solver comparison… and View ▸ 3D iodine view to ``window``; returns the holder."""
    views = AnalysisViews(window)
    menu = _view_menu(window)
    menu.addSeparator()
    grid = menu.addAction("Solver comparison…")
    grid.setShortcut(QtGui.QKeySequence("Ctrl+Shift+G"))
    grid.triggered.connect(lambda _=False: views.show_solver_grid())
    view3d = menu.addAction("3D iodine view")
    view3d.setShortcut(QtGui.QKeySequence("Ctrl+Shift+3"))
    view3d.triggered.connect(lambda _=False: views.show_3d())
    window.analysis_views = views
    return views


# -- scripted screenshots -----------------------------------------------------------------------
def _wait(app: Any, condition: Any, timeout_s: float) -> bool:
    import time

    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def screenshots(argv: list[str] | None = None) -> int:
    """``python -m mfm_viewer.analysis_views [STUDY]``: the solver grid and 3D view as PNGs, offscreen."""
    import argparse
    import os
    import sys
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="python -m mfm_viewer.analysis_views",
        description="Render the solver comparison (plain and difference) and the 3D iodine view to PNGs.",
    )
    p.add_argument("study", nargs="?", help="study to open (default: the demo phantom with its true native)")
    p.add_argument("--reference", help="real native on the study's grid")
    p.add_argument("--model", help="checkpoint (default: the demo model)")
    p.add_argument("--synthetic", help="a translated volume for the 3D view (default: translate the study)")
    p.add_argument("--grid", default=None, help="solver:steps list (default: the grid's default)")
    p.add_argument("--slice", type=int, default=None, help="axial slice index (default: the middle)")
    p.add_argument("--out-dir", default=".", help="where the PNGs go (default: here)")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    from mfm_engine.demo import demo_checkpoint, demo_study
    from mfm_viewer.main_window import MainWindow
    from mfm_viewer.settings import ViewerSettings

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    settings_dir = tempfile.mkdtemp(prefix="mfm_views_")  # never the user's own viewer settings
    window = MainWindow(ViewerSettings(Path(settings_dir) / "viewer.ini"))
    window.resize(1600, 1000)
    window.show()
    if args.study:
        if not window.open_study(args.study, reference=args.reference):
            print(f"could not open {args.study}", file=sys.stderr)
            return 2
    else:
        contrast, native = demo_study()
        window.set_study(contrast, reference=native)
    model = args.model or demo_checkpoint()
    if model is None or not window.open_checkpoint(model):
        print("no model: give --model CKPT (the demo model is not installed)", file=sys.stderr)
        return 2
    if args.slice is not None:
        i, j, _k = window.cursor.ijk
        window.cursor.set_ijk((i, j, args.slice))
    views: AnalysisViews = window.analysis_views
    grid = views.show_solver_grid()
    grid.resize(1600, 1000)
    if args.grid and not grid.set_settings(args.grid):
        print(grid.status.text(), file=sys.stderr)
        return 2
    _wait(app, lambda: grid.finished and len(grid.results) == len(grid.specs), 1800)
    grid.grab().save(str(out / "solver_grid.png"), "PNG")
    grid.set_diff_mode(True)
    app.processEvents()
    grid.grab().save(str(out / "solver_grid_difference.png"), "PNG")
    if args.synthetic:
        from mfm_engine.io.study import read_study

        synthetic = read_study(args.synthetic)
        synthetic.meta.setdefault("synthetic", True)
        window.session.set_synthetic(synthetic, None)
    else:
        window.engine.translate_volume()
        _wait(app, lambda: not window.engine.busy, 1800)
    pane = views.show_3d()
    _wait(app, lambda: pane.state != "probing", 120)
    pane.refresh(force=True)
    _wait(app, lambda: pane.state != "no data" and pane.last_image is not None or pane.state == "failed", 120)
    app.processEvents()
    pane.grab().save(str(out / "view3d.png"), "PNG")
    window.grab().save(str(out / "main_window_3d.png"), "PNG")
    print(f"wrote solver_grid.png, solver_grid_difference.png, view3d.png, main_window_3d.png to {out}")
    print(f"3D view: {pane.state}" + (f" ({pane.message_text})" if pane.state == "failed" else ""))
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(screenshots())
