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
