"""The 3D view: a volume rendering of the iodine map (input − synthetic native) over a faint body outline.

Rendering is vtk's CPU ray caster (vtkFixedPointVolumeRayCastMapper, about ten times faster than the
GPU ray caster on a software OpenGL) into an *offscreen* vtkRenderWindow, copied into a QLabel. No
QVTKRenderWindowInteractor: that needs a real window system, while an offscreen render window works
under X11, Wayland, Qt's offscreen platform and on machines without a display, through EGL or OSMesa
(Mesa's llvmpipe when there is no GPU). Rotation (left drag), zoom (wheel) and reset are done here on
vtk's camera. The crosshair is a small sphere with three lines through it.

Failing soft: a broken OpenGL driver can kill a process while it creates its context, so the first
time a pane is shown a tiny render runs in a *subprocess* (``probe_offscreen_rendering``); only when
it succeeds does the pane render in-process, and any exception there becomes a message in the pane.
``MFM_VIEW3D=off`` turns the pane off; ``MFM_VIEW3D_PROBE=0`` skips the probe. See docs/compare.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mfm_viewer.dialogs import plain_message
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.logic.view3d_logic import (
    DEFAULT_THRESHOLD_HU,
    LpsGrid,
    View3DError,
    block_mean,
    downsample_factors,
    iodine_map,
    iodine_stats,
    lps_grid,
)

BACKGROUND = (0.07, 0.07, 0.09)
SYNTHETIC_ORANGE = "#ff8c1a"
# Iodine colours from the threshold (dark red) to the top of the range (pale yellow).
IODINE_STOPS = (
    (0.0, (0.55, 0.05, 0.05)),
    (0.35, (0.9, 0.25, 0.05)),
    (0.7, (1.0, 0.65, 0.1)),
    (1.0, (1.0, 1.0, 0.7)),
)
PROBE_TIMEOUT_S = 90

_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


# -- vtk, imported only when a pane renders -----------------------------------------------------
def _vtk() -> Any:
    """The vtk modules the renderer needs (importing OpenGL2 registers the render-window factories)."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401
    from vtkmodules import (
        vtkCommonCore,
        vtkCommonDataModel,
        vtkFiltersCore,
        vtkFiltersSources,
        vtkRenderingCore,
        vtkRenderingVolume,
    )
    from vtkmodules.util import numpy_support

    # VTK tries X11 before EGL and logs a warning when there is no X server; that is expected here.
    vtkCommonCore.vtkLogger.SetStderrVerbosity(vtkCommonCore.vtkLogger.VERBOSITY_ERROR)

    class _Vtk:
        core, data, filters, sources = vtkRenderingCore, vtkCommonDataModel, vtkFiltersCore, vtkFiltersSources
        volume, np = vtkRenderingVolume, numpy_support

    return _Vtk


class IodineRenderer:
    """An offscreen vtk scene: iodine volume, body outline, crosshair; render() gives an RGB array."""

    def __init__(self, width: int = 480, height: int = 400) -> None:
        vtk = self.vtk = _vtk()
        self.window = vtk.core.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(int(width), int(height))
        self.renderer = vtk.core.vtkRenderer()
        self.renderer.SetBackground(*BACKGROUND)
        self.window.AddRenderer(self.renderer)
        self.mapper = vtk.volume.vtkFixedPointVolumeRayCastMapper()
        self.mapper.SetAutoAdjustSampleDistances(0)
        self.volume = vtk.core.vtkVolume()
        self.volume.SetMapper(self.mapper)
        prop = vtk.core.vtkVolumeProperty()
        prop.SetInterpolationTypeToLinear()
        prop.ShadeOff()
        self.colour_tf = vtk.core.vtkColorTransferFunction()
        self.opacity_tf = vtk.data.vtkPiecewiseFunction()
        prop.SetColor(self.colour_tf)
        prop.SetScalarOpacity(self.opacity_tf)
        self.volume.SetProperty(prop)
        self.body_actor = vtk.core.vtkActor()
        self.body_actor.GetProperty().SetColor(0.72, 0.78, 0.88)
        self.body_actor.GetProperty().SetOpacity(0.13)
        self.cross_actors: list[Any] = []
        self.threshold_hu = DEFAULT_THRESHOLD_HU
        self.top_hu = 300.0
        self.bounds: tuple[float, ...] | None = None
        self._has_data = False

    # -- scene --------------------------------------------------------------------------------
    def _image(self, sp_l_array: np.ndarray, spacing, origin) -> Any:
        image = self.vtk.data.vtkImageData()
        n_s, n_p, n_l = sp_l_array.shape
        image.SetDimensions(n_l, n_p, n_s)
        image.SetSpacing(*spacing)
        image.SetOrigin(*origin)
        flat = np.ascontiguousarray(sp_l_array, dtype=np.float32).ravel()  # L fastest, as vtk wants
        scalars = self.vtk.np.numpy_to_vtk(flat, deep=True)
        image.GetPointData().SetScalars(scalars)
        return image

    def set_data(self, iodine_spl: np.ndarray, body_spl: np.ndarray | None, spacing, origin) -> None:
        """Arrays in (S, P, L) order on an LPS-aligned grid; spacing/origin as (L, P, S) mm."""
        self.mapper.SetInputData(self._image(iodine_spl, spacing, origin))
        if not self._has_data:
            self.renderer.AddVolume(self.volume)
        self.renderer.RemoveActor(self.body_actor)
        if body_spl is not None and body_spl.any():
            from scipy import ndimage

            smooth = ndimage.gaussian_filter(body_spl.astype(np.float32), 1.0)
            surface = self.vtk.filters.vtkFlyingEdges3D()
            surface.SetInputData(self._image(smooth, spacing, origin))
            surface.SetValue(0, 0.5)
            surface.ComputeNormalsOn()
            mapper = self.vtk.core.vtkPolyDataMapper()
            mapper.SetInputConnection(surface.GetOutputPort())
            mapper.ScalarVisibilityOff()
            self.body_actor.SetMapper(mapper)
            self.renderer.AddActor(self.body_actor)
        n_s, n_p, n_l = iodine_spl.shape
        self.bounds = (
            origin[0],
            origin[0] + (n_l - 1) * spacing[0],
            origin[1],
            origin[1] + (n_p - 1) * spacing[1],
            origin[2],
            origin[2] + (n_s - 1) * spacing[2],
        )
        self.mapper.SetSampleDistance(float(min(spacing)) / 2)
        self._has_data = True
        self.reset_camera()

    def set_transfer(self, threshold_hu: float, top_hu: float) -> None:
        """Iodine shown from ``threshold_hu`` (transparent below) to ``top_hu`` (brightest, most opaque)."""
        lo = float(threshold_hu)
        hi = max(float(top_hu), lo + 20.0)
        self.threshold_hu, self.top_hu = lo, hi
        self.colour_tf.RemoveAllPoints()
        self.opacity_tf.RemoveAllPoints()
        self.colour_tf.AddRGBPoint(lo - 1, *IODINE_STOPS[0][1])
        for frac, rgb in IODINE_STOPS:
            self.colour_tf.AddRGBPoint(lo + frac * (hi - lo), *rgb)
        self.opacity_tf.AddPoint(-5000.0, 0.0)
        self.opacity_tf.AddPoint(lo, 0.0)
        self.opacity_tf.AddPoint(lo + 0.05 * (hi - lo), 0.04)
        self.opacity_tf.AddPoint(lo + 0.4 * (hi - lo), 0.25)
        self.opacity_tf.AddPoint(hi, 0.7)
        self.opacity_tf.AddPoint(hi + 5000.0, 0.7)

    def set_body_visible(self, on: bool) -> None:
        """Show or hide the faint body outline."""
        self.body_actor.SetVisibility(bool(on))

    def set_crosshair(self, point: tuple[float, float, float] | None) -> None:
        """A small sphere and three lines (along L, P, S) through ``point`` (LPS mm); None hides them."""
        for actor in self.cross_actors:
            self.renderer.RemoveActor(actor)
        self.cross_actors = []
        if point is None or self.bounds is None:
            return
        b = self.bounds
        extent = max(b[1] - b[0], b[3] - b[2], b[5] - b[4])
        sphere = self.vtk.sources.vtkSphereSource()
        sphere.SetCenter(*point)
        sphere.SetRadius(0.022 * extent)
        sphere.SetThetaResolution(16)
        sphere.SetPhiResolution(12)
        self.cross_actors.append(self._actor(sphere, (0.25, 0.9, 1.0), 1.0))
        # Line colours follow the viewer's planes: each line is where two of them cross.
        ends = (
            ((b[0], point[1], point[2]), (b[1], point[1], point[2]), (0.37, 0.75, 0.37)),  # along L
            ((point[0], b[2], point[2]), (point[0], b[3], point[2]), (0.91, 0.82, 0.29)),  # along P
            ((point[0], point[1], b[4]), (point[0], point[1], b[5]), (0.88, 0.31, 0.31)),  # along S
        )
        for p0, p1, rgb in ends:
            line = self.vtk.sources.vtkLineSource()
            line.SetPoint1(*p0)
            line.SetPoint2(*p1)
            actor = self._actor(line, rgb, 0.8)
            actor.GetProperty().SetLineWidth(1.5)
            self.cross_actors.append(actor)
        for actor in self.cross_actors:
            self.renderer.AddActor(actor)

    def _actor(self, source: Any, rgb: tuple[float, float, float], opacity: float) -> Any:
        mapper = self.vtk.core.vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort())
        actor = self.vtk.core.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*rgb)
        actor.GetProperty().SetOpacity(opacity)
        return actor

    # -- camera -------------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Look from the front (anterior), head up: the patient's right on the image's left."""
        if self.bounds is None:
            return
        b = self.bounds
        centre = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
        cam = self.renderer.GetActiveCamera()
        cam.SetFocalPoint(*centre)
        cam.SetPosition(centre[0], centre[1] - 1000.0, centre[2])  # anterior is −P
        cam.SetViewUp(0.0, 0.0, 1.0)  # superior up
        self.renderer.ResetCamera(*b)
        cam.Zoom(1.5)

    def rotate(self, azimuth_deg: float, elevation_deg: float) -> None:
        """Turn the camera about the focal point."""
        cam = self.renderer.GetActiveCamera()
        cam.Azimuth(azimuth_deg)
        cam.Elevation(elevation_deg)
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCameraClippingRange()

    def zoom(self, factor: float) -> None:
        """Zoom in (> 1) or out (< 1)."""
        self.renderer.GetActiveCamera().Zoom(factor)
        self.renderer.ResetCameraClippingRange()

    def camera_state(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(position, view-up) of the camera, for tests."""
        cam = self.renderer.GetActiveCamera()
        return tuple(cam.GetPosition()), tuple(cam.GetViewUp())

    # -- pixels -------------------------------------------------------------------------------
    def render(self, width: int, height: int, fast: bool = False) -> np.ndarray:
        """Render at (width, height) pixels; (H, W, 3) uint8, row 0 at the top."""
        self.window.SetSize(max(int(width), 16), max(int(height), 16))
        # While dragging, cast one ray per 2×2 pixels: four times fewer rays, still readable.
        self.mapper.SetImageSampleDistance(2.0 if fast else 1.0)
        self.window.Render()
        grab = self.vtk.core.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        out = grab.GetOutput()
        w, h, _ = out.GetDimensions()
        pixels = self.vtk.np.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, 3)
        return np.ascontiguousarray(pixels[::-1])  # vtk's row 0 is the bottom

    def close(self) -> None:
        """Release the OpenGL context."""
        self.window.Finalize()


def background_rgb() -> np.ndarray:
    """The scene's background colour as uint8 RGB (what an empty render is filled with)."""
    return np.round(np.asarray(BACKGROUND) * 255).astype(np.uint8)


def foreground_pixels(rgb: np.ndarray, tolerance: int = 6) -> int:
    """Pixels that differ from the background: how much a render actually drew."""
    diff = np.abs(rgb.astype(np.int16) - background_rgb().astype(np.int16)).max(axis=2)
    return int((diff > tolerance).sum())


# -- the probe ----------------------------------------------------------------------------------
def _probe_main() -> None:
    """Subprocess entry: render a small blob offscreen and report how it went on stdout."""
    z, y, x = np.indices((24, 24, 24))
    blob = (((x - 12) ** 2 + (y - 12) ** 2 + (z - 12) ** 2) < 49).astype(np.float32) * 300.0
    r = IodineRenderer(64, 64)
    r.set_data(blob, blob > 0, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    r.set_transfer(30.0, 300.0)
    drawn = foreground_pixels(r.render(64, 64))
    name = r.window.GetClassName()
    r.close()
    if drawn == 0:
        print(f"FAIL {name} rendered an empty image")
        sys.exit(3)
    print(f"OK {name} {drawn}")


def probe_offscreen_rendering(timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(works, what): try an offscreen vtk render in a subprocess, once per process."""
    global _probe_result
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        if os.environ.get("MFM_VIEW3D", "").lower() in ("off", "0", "no"):
            _probe_result = (False, "The 3D view is turned off (MFM_VIEW3D=off).")
            return _probe_result
        if os.environ.get("MFM_VIEW3D_PROBE", "1") == "0":
            _probe_result = (True, "probe skipped (MFM_VIEW3D_PROBE=0)")
            return _probe_result
        code = "from mfm_viewer.view3d import _probe_main; _probe_main()"
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        # The probe imports this package: make sure it finds the same copy, installed or not.
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        try:
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env
            )
        except subprocess.TimeoutExpired:
            _probe_result = (False, f"A test render did not finish within {timeout_s:.0f} s.")
            return _probe_result
        except OSError as exc:
            _probe_result = (False, f"Could not start a test render: {exc}")
            return _probe_result
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("OK", "FAIL"))]
        if done.returncode == 0 and lines and lines[-1].startswith("OK"):
            _probe_result = (True, lines[-1])
        else:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            why = "; ".join(tail) or f"exit status {done.returncode}"
            if done.returncode < 0:
                why = f"the test render crashed (signal {-done.returncode}); {why}"
            _probe_result = (False, f"Offscreen OpenGL does not work here for vtk: {why}")
        return _probe_result


def reset_probe() -> None:
    """Forget the probe's answer (tests)."""
    global _probe_result
    with _probe_lock:
        _probe_result = None


class _ProbeThread(QtCore.QThread):
    result = QtCore.Signal(bool, str)

    def run(self) -> None:
        ok, text = probe_offscreen_rendering()
        self.result.emit(ok, text)


# -- the pane -----------------------------------------------------------------------------------
class IodineBar(QtWidgets.QWidget):
    """Colour bar of the iodine rendering, threshold … top HU."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.low, self.high = DEFAULT_THRESHOLD_HU, 300.0
        self.setFixedWidth(70)

    def set_range(self, low: float, high: float) -> None:
        """Show ``low`` … ``high`` HU."""
        self.low, self.high = float(low), float(high)
        self.update()

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("#202020"))
        font = p.font()
        font.setPixelSize(11)
        p.setFont(font)
        top, bottom = 40, self.height() - 14
        bar = QtCore.QRect(6, top, 16, max(10, bottom - top))
        grad = QtGui.QLinearGradient(0, bar.top(), 0, bar.bottom())
        for frac, rgb in IODINE_STOPS:
            grad.setColorAt(1 - frac, QtGui.QColor(*(int(255 * c) for c in rgb)))
        p.fillRect(bar, grad)
        p.setPen(QtGui.QColor("#e0e0e0"))
        p.drawText(QtCore.QRect(0, 4, self.width(), 16), QtCore.Qt.AlignmentFlag.AlignHCenter, "iodine")
        p.drawText(QtCore.QRect(0, 19, self.width(), 16), QtCore.Qt.AlignmentFlag.AlignHCenter, "HU")
        fm = QtGui.QFontMetrics(font)
        for frac in (0.0, 0.5, 1.0):
            y = bar.top() + frac * bar.height()
            value = self.high - frac * (self.high - self.low)
            p.drawLine(bar.right(), int(y), bar.right() + 4, int(y))
            p.drawText(bar.right() + 7, int(y + fm.ascent() / 2 - 1), f"{value:.0f}")
        p.end()


class Iodine3DView(QtWidgets.QWidget):
    """The 3D pane: message or rendering, threshold, outline toggle, reset; drag rotates, wheel zooms."""

    rendered = QtCore.Signal()  # after every successful render
    state_changed = QtCore.Signal(str)  # 'probing' | 'no data' | 'ready' | 'failed'

    def __init__(
        self,
        cursor: CursorModel,
        session: Callable[[], Any],
        translate_volume: Callable[[], Any] | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.cursor = cursor
        self.session = session
        self.translate_volume = translate_volume
        self.state = "probing"
        self.message_text = ""
        self.renderer: IodineRenderer | None = None
        self.last_image: np.ndarray | None = None
        self.grid: LpsGrid | None = None
        self._data_key: tuple | None = None
        self._drag_from: QtCore.QPointF | None = None
        self._probe: _ProbeThread | None = None
        self.probe_text = ""
        self.iodine: np.ndarray | None = None
        self._build()
        self._unsubscribe = cursor.subscribe(self._on_cursor)
        self._render_timer = QtCore.QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render_now)
        self._fast = False
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(500)
        self._poll.timeout.connect(self.refresh)

    def _build(self) -> None:
        self.setMinimumSize(320, 300)
        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        self.caption = QtWidgets.QLabel("Iodine map: input − synthetic native")
        self.caption.setStyleSheet("font-weight: bold;")
        self.badge = QtWidgets.QLabel("SYNTHETIC")
        self.badge.setStyleSheet(
            f"color: {SYNTHETIC_ORANGE}; border: 2px solid {SYNTHETIC_ORANGE}; border-radius: 3px;"
            " padding: 1px 5px; font-weight: bold;"
        )
        self.badge.setToolTip("Computed from a model's output, not measured by a scanner")
        self.threshold = QtWidgets.QSpinBox()
        self.threshold.setRange(5, 1000)
        self.threshold.setSingleStep(10)
        self.threshold.setValue(int(DEFAULT_THRESHOLD_HU))
        self.threshold.setPrefix("> ")
        self.threshold.setSuffix(" HU")
        self.threshold.setToolTip("Show iodine (contrast − native) above this many HU")
        self.threshold.valueChanged.connect(self._on_threshold)
        self.body_check = QtWidgets.QCheckBox("Body outline")
        self.body_check.setChecked(True)
        self.body_check.toggled.connect(self._on_body_toggled)
        self.reset_button = QtWidgets.QPushButton("Reset view")
        self.reset_button.setToolTip("From the front, head up")
        self.reset_button.clicked.connect(self.reset_view)
        # Two rows: what is shown (badge and caption), then the controls; the dock may be narrow.
        self.caption.setWordWrap(True)
        self.caption.setMinimumWidth(40)
        self.badge.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Fixed)
        bar.addWidget(self.badge)
        bar.addWidget(self.caption, 1)
        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 2)
        controls.addWidget(QtWidgets.QLabel("Iodine"))
        for w in (self.threshold, self.body_check):
            controls.addWidget(w)
        controls.addStretch(1)
        controls.addWidget(self.reset_button)

        self.image = QtWidgets.QLabel()
        self.image.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(200, 200)
        self.image.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored)
        self.image.setStyleSheet("background: #121217;")
        self.image.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.message.setStyleSheet("color: #c8c8c8; background: #121217; padding: 16px; font-size: 13px;")
        self.translate_button = QtWidgets.QPushButton("Translate volume")
        self.translate_button.clicked.connect(self._translate)
        message_box = QtWidgets.QWidget()
        ml = QtWidgets.QVBoxLayout(message_box)
        ml.addStretch(1)
        ml.addWidget(self.message)
        ml.addWidget(self.translate_button, 0, QtCore.Qt.AlignmentFlag.AlignHCenter)
        ml.addStretch(1)
        message_box.setStyleSheet("background: #121217;")
        self.stack = QtWidgets.QStackedWidget()
        self.stack.installEventFilter(self)  # its size, not the pane's, is what the picture must fill
        self.stack.addWidget(message_box)
        self.stack.addWidget(self.image)
        self.colorbar = IodineBar()
        body = QtWidgets.QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.stack, 1)
        body.addWidget(self.colorbar)
        self.info = QtWidgets.QLabel("")
        self.info.setStyleSheet("color: #b0b0b0; padding: 2px 4px;")
        self.info.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addLayout(controls)
        layout.addLayout(body, 1)
        layout.addWidget(self.info)
        self._show_message("Checking for offscreen OpenGL…", "probing")

    # -- states -------------------------------------------------------------------------------
    def _show_message(self, text: str, state: str, translate: bool = False) -> None:
        self.message_text = text
        self.message.setText(text)
        self.translate_button.setVisible(translate and self.translate_volume is not None)
        self.stack.setCurrentIndex(0)
        self.colorbar.setVisible(False)
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _fail(self, text: str) -> None:
        if self.renderer is not None:
            try:
                self.renderer.close()
            except Exception:  # the context may already be gone; nothing more to release
                pass
        self.renderer = None
        self._show_message(
            f"The 3D view is not available.\n{text}\n\nThe rest of the viewer works as usual; "
            "docs/compare.md says what the 3D view needs.",
            "failed",
        )

    def start(self) -> None:
        """Probe OpenGL (once per process, in a subprocess, off the GUI thread), then render."""
        if self.state == "failed" or self._probe is not None:
            return
        if _probe_result is not None:
            self._on_probe(*_probe_result)
            return
        self._probe = _ProbeThread(self)
        self._probe.result.connect(self._on_probe)
        self._probe.start()

    def _on_probe(self, ok: bool, text: str) -> None:
        if self._probe is not None:
            self._probe.wait()
            self._probe = None
        if not ok:
            self._fail(text)
            return
        self.probe_text = text
        self.state = "no data"
        self.refresh(force=True)

    # -- data ---------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Follow the open study and its synthetic volume; (re)load the scene when they changed."""
        if self.state in ("probing", "failed"):
            return
        session = self.session()
        synthetic = session.synthetic if session is not None else None
        key = (id(session), id(session.input) if session else None, id(synthetic))
        if key == self._data_key and not force:
            return
        self._data_key = key
        if session is None:
            self._show_message("Open a study to see its iodine map in 3D.", "no data")
            return
        if synthetic is None:
            self._show_message(
                "The 3D view shows the iodine the model removed (input − synthetic native) for the whole "
                "volume.\nTranslate the volume first (Engine ▸ Translate volume).",
                "no data",
                translate=True,
            )
            return
        try:
            self._load(session.input, synthetic)
        except View3DError as exc:  # the data, not OpenGL: say so, and try again with the next volume
            self._show_message(f"Cannot show this volume in 3D: {exc}", "no data")
            return
        except Exception as exc:  # fail soft: a message in the pane, never a crash
            self._fail(f"The scene could not be built: {plain_message(exc)}")
            return
        self.schedule_render()

    def _load(self, input_volume: Any, synthetic: Any) -> None:
        from mfm_engine.metrics import body_mask

        grid = lps_grid(input_volume)
        iodine = grid.array(iodine_map(input_volume, synthetic))
        body = grid.array(body_mask(input_volume))
        factors = downsample_factors(iodine.shape)
        small = block_mean(iodine, factors)
        small_body = block_mean(body.astype(np.float32), factors) > 0.5
        # Block means keep the grid's corner voxel centre where it was only for factor 1; shift for the rest.
        spacing = tuple(grid.spacing[t] * factors[2 - t] for t in range(3))
        origin = tuple(grid.origin[t] + (factors[2 - t] - 1) * grid.spacing[t] / 2 for t in range(3))
        if self.renderer is None:
            self.renderer = IodineRenderer()
        self.grid = grid
        self.iodine = iodine
        self.renderer.set_data(small, small_body, spacing, origin)
        self.renderer.set_body_visible(self.body_check.isChecked())
        self._update_transfer()
        self._update_crosshair()
        prov = synthetic.meta.get("provenance")
        if prov:
            made = f"{prov.get('model', 'model')}, {prov.get('solver', '?')} × {prov.get('steps', '?')}"
        else:
            made = str(synthetic.meta.get("series_description") or "no provenance recorded")
        phantom = " · PHANTOM" if input_volume.meta.get("phantom") else ""
        shown = " × ".join(str(n) for n in small.shape[::-1])
        self.info.setText(
            f"From the translated volume ({made}){phantom}. Rendered on a {shown} grid (L × P × S). "
            "Left drag: rotate · wheel: zoom · view from the front, head up, patient's right on the left."
        )

    def _update_transfer(self) -> None:
        if self.renderer is None or self.grid is None:
            return
        low = float(self.threshold.value())
        count, p99 = iodine_stats(self.iodine, low)
        high = max(p99, low + 100.0)
        self.renderer.set_transfer(low, high)
        self.colorbar.set_range(low, high)
        self.caption.setText(f"Iodine map: input − synthetic native > {low:.0f} HU ({count} voxels)")

    def _update_crosshair(self) -> None:
        if self.renderer is None or self.grid is None:
            return
        self.renderer.set_crosshair(self.grid.world(tuple(float(v) for v in self.cursor.ijk)))

    # -- rendering ----------------------------------------------------------------------------
    def schedule_render(self, fast: bool = False) -> None:
        """Render at the next turn of the event loop (several requests merge into one)."""
        self._fast = fast
        if self.renderer is not None:
            self._render_timer.start()

    def _render_now(self) -> None:
        if self.renderer is None:
            return
        if not self.colorbar.isVisible() and self.isVisible():
            # Show the bar before measuring: the image gets the room that is left beside it.
            self.colorbar.setVisible(True)
            self.stack.setCurrentIndex(1)
            self.layout().activate()
        size = self.stack.size()
        width = max(size.width() - 2, 64)
        height = max(size.height() - 2, 64)
        try:
            rgb = self.renderer.render(width, height, fast=self._fast)
        except Exception as exc:  # fail soft
            self._fail(f"Rendering failed: {plain_message(exc)}")
            return
        self.last_image = rgb
        h, w, _ = rgb.shape
        image = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()
        self.image.setPixmap(QtGui.QPixmap.fromImage(image))
        self.stack.setCurrentIndex(1)
        self.colorbar.setVisible(True)
        if self.state != "ready":
            self.state = "ready"
            self.state_changed.emit("ready")
        self.rendered.emit()

    # -- interaction --------------------------------------------------------------------------
    def _on_threshold(self, _value: int) -> None:
        self._update_transfer()
        self.schedule_render()

    def _on_body_toggled(self, on: bool) -> None:
        if self.renderer is not None:
            self.renderer.set_body_visible(on)
            self.schedule_render()

    def reset_view(self) -> None:
        """Back to the front view."""
        if self.renderer is not None:
            self.renderer.reset_camera()
            self.schedule_render()

    def rotate(self, azimuth_deg: float, elevation_deg: float, fast: bool = False) -> None:
        """Turn the view (what a left drag does)."""
        if self.renderer is not None:
            self.renderer.rotate(azimuth_deg, elevation_deg)
            self.schedule_render(fast)

    def _translate(self) -> None:
        if self.translate_volume is not None:
            self.translate_volume()

    def _on_cursor(self, what: str) -> None:
        if what == "position" and self.renderer is not None and self.isVisible():
            self._update_crosshair()
            self.schedule_render()

    def mousePressEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and self.stack.currentIndex() == 1:
            self._drag_from = ev.position()
            ev.accept()
        else:
            super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is None:
            return super().mouseMoveEvent(ev)
        d = ev.position() - self._drag_from
        self._drag_from = ev.position()
        self.rotate(-0.5 * d.x(), 0.5 * d.y(), fast=True)
        ev.accept()

    def mouseReleaseEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is not None:
            self._drag_from = None
            self.schedule_render(fast=False)  # the full-quality picture once the drag ends
            ev.accept()
        else:
            super().mouseReleaseEvent(ev)

    def wheelEvent(self, ev: QtGui.QWheelEvent) -> None:  # noqa: N802
        delta = ev.angleDelta().y()
        if delta and self.renderer is not None:
            self.renderer.zoom(1.1 ** (delta / 120.0))
            self.schedule_render()
        ev.accept()

    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802
        if obj is self.stack and ev.type() == QtCore.QEvent.Type.Resize and self.stack.currentIndex() == 1:
            self.schedule_render()
        return False

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(ev)
        self._poll.start()
        self.start()
        self.refresh()

    def hideEvent(self, ev: QtGui.QHideEvent) -> None:  # noqa: N802
        self._poll.stop()
        super().hideEvent(ev)

    def shutdown(self) -> None:
        """Stop listening, wait for the probe, release the OpenGL context."""
        self._poll.stop()
        self._render_timer.stop()
        self._unsubscribe()
        if self._probe is not None:
            self._probe.wait()
        if self.renderer is not None:
            try:
                self.renderer.close()
            except Exception:  # already gone: nothing to release
                pass
            self.renderer = None
