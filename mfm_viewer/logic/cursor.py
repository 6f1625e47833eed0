"""The one cursor every view shares: voxel position, display window, zoom and pan. Qt-free.

Views subscribe with a callback ``fn(what)`` where ``what`` is 'position', 'window' or 'view';
they write through the setters, never to the attributes, so every view hears every change.
"""

from __future__ import annotations

from collections.abc import Callable

from mfm_engine.intensity import DEFAULT_WINDOW

Listener = Callable[[str], None]

MIN_WIDTH_HU = 1.0
MAX_WIDTH_HU = 6000.0
MIN_ZOOM, MAX_ZOOM = 0.25, 40.0


class CursorModel:
    """Voxel (i, j, k), window (width, level) in HU, zoom and per-plane pan centre in display mm."""

    def __init__(
        self,
        shape_xyz: tuple[int, int, int],
        width: float = DEFAULT_WINDOW.width,
        level: float = DEFAULT_WINDOW.level,
    ) -> None:
        self.shape_xyz = tuple(int(n) for n in shape_xyz)
        self.ijk: tuple[int, int, int] = tuple(n // 2 for n in self.shape_xyz)  # type: ignore[assignment]
        self.width = float(width)
        self.level = float(level)
        self.zoom = 1.0
        self.centers: dict[str, tuple[float, float] | None] = {}
        self._listeners: list[Listener] = []

    def reshape(self, shape_xyz: tuple[int, int, int]) -> None:
        """A new volume: centre the cursor, fit the views, keep the window."""
        self.shape_xyz = tuple(int(n) for n in shape_xyz)
        self.ijk = tuple(n // 2 for n in self.shape_xyz)  # type: ignore[assignment]
        self.zoom = 1.0
        self.centers.clear()
        self._notify("position")
        self._notify("view")

    # -- listeners ------------------------------------------------------------------------
    def subscribe(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(what)`` on every change; returns a function that unsubscribes."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _notify(self, what: str) -> None:
        for fn in list(self._listeners):
            fn(what)

    # -- position -------------------------------------------------------------------------
    def set_ijk(self, ijk: tuple[int, int, int]) -> None:
        """Move the cursor to a voxel (clamped into the volume)."""
        new = tuple(min(max(int(v), 0), n - 1) for v, n in zip(ijk, self.shape_xyz, strict=True))
        if new != self.ijk:
            self.ijk = new  # type: ignore[assignment]
            self._notify("position")

    def set_axis(self, axis: int, value: int) -> None:
        """Set one index (0 = i/x, 1 = j/y, 2 = k/z)."""
        ijk = list(self.ijk)
        ijk[axis] = value
        self.set_ijk(tuple(ijk))  # type: ignore[arg-type]

    def step(self, axis: int, delta: int) -> None:
        """Move ``delta`` slices along one index axis."""
        self.set_axis(axis, self.ijk[axis] + delta)

    # -- window ---------------------------------------------------------------------------
    @property
    def window(self) -> tuple[float, float]:
        """(width, level) in HU."""
        return self.width, self.level

    @property
    def levels(self) -> tuple[float, float]:
        """(black, white) HU: the grey ramp's ends."""
        return self.level - self.width / 2, self.level + self.width / 2

    def set_window(self, width: float, level: float) -> None:
        """Set width and level in HU (width kept within 1..6000)."""
        width = min(max(float(width), MIN_WIDTH_HU), MAX_WIDTH_HU)
        level = float(level)
        if (width, level) != (self.width, self.level):
            self.width, self.level = width, level
            self._notify("window")

    def drag_window(self, dx_px: float, dy_px: float) -> None:
        """Window/level drag: rightwards widens, upwards raises the level; faster for wide windows."""
        gain = max(self.width, 50.0) / 250.0  # HU per screen pixel
        self.set_window(self.width + dx_px * gain, self.level - dy_px * gain)

    # -- zoom and pan ---------------------------------------------------------------------
    def set_zoom(
        self,
        zoom: float,
        plane: str | None = None,
        anchor: tuple[float, float] | None = None,
        image_center: tuple[float, float] | None = None,
    ) -> None:
        """Set the zoom (1 = fit); with ``plane``/``anchor`` the anchor point stays put in that plane."""
        zoom = min(max(float(zoom), MIN_ZOOM), MAX_ZOOM)
        if plane is not None and anchor is not None and image_center is not None:
            old = self.centers.get(plane) or image_center
            self.centers[plane] = zoom_about(old, anchor, self.zoom, zoom)
        if zoom != self.zoom or plane is not None:
            self.zoom = zoom
            self._notify("view")

    def pan(self, plane: str, dx_mm: float, dy_mm: float, image_center: tuple[float, float]) -> None:
        """Shift one plane's view centre by (dx, dy) display mm."""
        cx, cy = self.centers.get(plane) or image_center
        self.centers[plane] = (cx + dx_mm, cy + dy_mm)
        self._notify("view")

    def reset_view(self) -> None:
        """Fit every plane again, centred."""
        self.zoom = 1.0
        self.centers.clear()
        self._notify("view")


def zoom_about(
    center: tuple[float, float], anchor: tuple[float, float], old_zoom: float, new_zoom: float
) -> tuple[float, float]:
    """New view centre so that ``anchor`` stays at the same screen spot when zooming."""
    f = old_zoom / new_zoom
    return anchor[0] + (center[0] - anchor[0]) * f, anchor[1] + (center[1] - anchor[1]) * f


def view_range(
    image_size_mm: tuple[float, float], zoom: float, center: tuple[float, float] | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x range, y range) in display mm to show an image of (width, height) mm at ``zoom``."""
    w, h = image_size_mm
    cx, cy = center if center is not None else (w / 2, h / 2)
    hw, hh = w / 2 / zoom, h / 2 / zoom
    return (cx - hw, cx + hw), (cy - hh, cy + hh)
