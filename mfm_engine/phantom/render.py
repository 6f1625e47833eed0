"""Drawing primitives for the phantom: soft-edged shapes on one axial slice, painted in order.

Everything works in patient millimetres (LPS: x → patient left, y → posterior) plus a depth
``d`` in mm below the top of the scan. Shapes give an approximate signed distance (mm, negative
inside); `frac` turns it into a partial-volume fraction with a smooth ramp about one pixel wide,
which is what a CT pixel straddling an edge records. Work is confined to each shape's bounding
box, so a 512×512 slice costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

N_ANG = 1024
# Bin centres of the angular look-up tables used by star-shaped outlines.
ANGLES = (-np.pi + (np.arange(N_ANG) + 0.5) * (2 * np.pi / N_ANG)).astype(np.float64)
_ANG_SCALE = N_ANG / (2 * np.pi)


def wrap(a: np.ndarray | float) -> np.ndarray | float:
    """Angle difference wrapped to (-π, π]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def gauss_ang(phi: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A bump exp(-(Δφ/width)²) on the circle."""
    return np.exp(-((wrap(phi - centre) / width) ** 2))


def superellipse_radius(phi: np.ndarray, a: float, b: float, p: float, theta: float = 0.0) -> np.ndarray:
    """Radius of the superellipse |u/a|^p + |v/b|^p = 1 (rotated by theta) along direction phi."""
    c = np.abs(np.cos(phi - theta)) / a
    s = np.abs(np.sin(phi - theta)) / b
    return (c**p + s**p) ** (-1.0 / p)


def frac(sd: np.ndarray, w: float) -> np.ndarray:
    """Partial-volume fraction of a signed distance (mm, < 0 inside): smoothstep over [-w, w]."""
    t = sd * np.float32(-0.5 / w)
    t += np.float32(0.5)
    np.maximum(t, np.float32(0.0), out=t)
    np.minimum(t, np.float32(1.0), out=t)
    t2 = t * t
    t *= np.float32(-2.0)
    t += np.float32(3.0)
    t *= t2
    return t


def slab_overlap(lo: float, hi: float, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Fraction of the slab [lo, hi] covered by the interval(s) [a, b] (exact z partial volume)."""
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None) / (hi - lo)


@dataclass
class Box:
    """A bounding box on the slice grid: index slices plus the (possibly warped) mm coordinates."""

    j0: int
    j1: int
    i0: int
    i1: int
    X: np.ndarray  # broadcastable to (j1-j0, i1-i0)
    Y: np.ndarray

    def __post_init__(self) -> None:
        self.sl = (slice(self.j0, self.j1), slice(self.i0, self.i1))
        self.shape = (self.j1 - self.j0, self.i1 - self.i0)

    def sub(self, other: Box) -> tuple[slice, slice]:
        """Slices of ``other`` (inside this box) relative to this box."""
        return (slice(other.j0 - self.j0, other.j1 - self.j0), slice(other.i0 - self.i0, other.i1 - self.i0))


class SliceGrid:
    """Pixel centres of one axial slice in mm, optionally warped (the anatomy seen through a motion)."""

    def __init__(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        d: float,
        thickness: float,
        warp: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.xs = xs.astype(np.float32)
        self.ys = ys.astype(np.float32)
        self.px = float(xs[1] - xs[0])
        self.d = float(d)
        self.thickness = float(thickness)
        self.shape = (len(ys), len(xs))
        # Half-width of the edge ramp: ~1.5 px in all, a pixel's box plus a little scanner blur.
        self.w = 0.75 * self.px
        self.warp = warp
        if warp is not None:
            ux, uy = warp
            self.margin = float(max(np.abs(ux).max(), np.abs(uy).max())) + 2 * self.px
        else:
            self.margin = 0.0

    def unwarped(self) -> SliceGrid:
        """The same slice without motion (for things that stay put, such as the table)."""
        return SliceGrid(self.xs, self.ys, self.d, self.thickness)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> Box | None:
        """The pixels whose (warped) coordinates may fall in [x0, x1] × [y0, y1] mm; None if none."""
        pad = self.margin + 2 * self.w
        i0 = max(0, int(np.floor((x0 - pad - self.xs[0]) / self.px)))
        i1 = min(self.shape[1], int(np.ceil((x1 + pad - self.xs[0]) / self.px)) + 1)
        j0 = max(0, int(np.floor((y0 - pad - self.ys[0]) / self.px)))
        j1 = min(self.shape[0], int(np.ceil((y1 + pad - self.ys[0]) / self.px)) + 1)
        if i0 >= i1 or j0 >= j1:
            return None
        if self.warp is None:
            X = self.xs[None, i0:i1]
            Y = self.ys[j0:j1, None]
        else:
            ux, uy = self.warp
            X = self.xs[None, i0:i1] - ux[j0:j1, i0:i1]
            Y = self.ys[j0:j1, None] - uy[j0:j1, i0:i1]
        return Box(j0, j1, i0, i1, X, Y)

    def box_around(self, cx: float, cy: float, rx: float, ry: float) -> Box | None:
        """`box` for a centre and half-extents."""
        return self.box(cx - rx, cx + rx, cy - ry, cy + ry)


class Canvas:
    """One slice being painted: an image per phase and a label map, all starting as air."""

    def __init__(self, shape: tuple[int, int], phases: tuple[str, ...]) -> None:
        self.img = {p: np.full(shape, -1000.0, dtype=np.float32) for p in phases}
        self.lab = np.zeros(shape, dtype=np.uint8)
        self.phases = phases

    def paint(
        self,
        box: Box,
        f: np.ndarray,
        label: int | np.ndarray,
        values: dict[str, float | np.ndarray],
    ) -> None:
        """Cover ``f`` (0..1) of each pixel with a tissue: image ← image·(1−f) + value·f."""
        f = np.broadcast_to(f, box.shape)
        for p in self.phases:
            sub = self.img[p][box.sl]
            sub += f * (np.float32(values[p]) - sub) if np.isscalar(values[p]) else f * (values[p] - sub)
        lab = self.lab[box.sl]
        m = f >= 0.5
        if np.isscalar(label):
            lab[m] = label
        else:
            lab[m] = np.broadcast_to(label, box.shape)[m]

    def paint_mix(
        self,
        box: Box,
        parts: list[tuple[np.ndarray, int, dict[str, float | np.ndarray]]],
    ) -> None:
        """Paint several tissues sharing one footprint: part fractions add up (bone shells, discs)."""
        shape = box.shape
        total = np.zeros(shape, dtype=np.float32)
        for f, _, _ in parts:
            total += f
        safe = np.maximum(total, 1e-6)
        values: dict[str, np.ndarray] = {}
        for p in self.phases:
            acc = np.zeros(shape, dtype=np.float32)
            for f, _, v in parts:
                acc += f * v[p]
            values[p] = acc / safe
        best = np.zeros(shape, dtype=np.float32)
        label = np.zeros(shape, dtype=np.uint8)
        for f, lab, _ in parts:
            f = np.broadcast_to(f, shape)
            better = f > best
            label[better] = lab
            best = np.maximum(best, f)
        self.paint(box, total, label, values)


def polar_index(X: np.ndarray, Y: np.ndarray, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """(ρ in mm, angular bin index) of pixels around a centre."""
    dx = X - np.float32(cx)
    dy = Y - np.float32(cy)
    rho = np.sqrt(dx * dx + dy * dy)
    idx = ((np.arctan2(dy, dx) + np.float32(np.pi)) * np.float32(_ANG_SCALE)).astype(np.intp)
    np.minimum(idx, N_ANG - 1, out=idx)
    return rho, idx


def ellipse_sd(
    X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float = 0.0
) -> np.ndarray:
    """Approximate signed distance to a rotated ellipse: the radial gap ρ − ρ_boundary along the ray."""
    dx = X - np.float32(cx)
    dy = Y - np.float32(cy)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = (dx * c + dy * s) * np.float32(1.0 / a)
    v = (dy * c - dx * s) * np.float32(1.0 / b)
    F = np.sqrt(u * u + v * v)
    rho = np.sqrt(dx * dx + dy * dy)
    # F is homogeneous of degree 1, so the boundary along the ray sits at ρ/F.
    return rho - rho / np.maximum(F, np.float32(1e-6))


def capsule_sd(X: np.ndarray, Y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float):
    """Signed distance to an in-plane capsule (segment p0–p1 thickened by r)."""
    ax, ay = p0
    bx, by = p1
    ex, ey = bx - ax, by - ay
    L2 = ex * ex + ey * ey
    dx = X - np.float32(ax)
    dy = Y - np.float32(ay)
    t = np.clip((dx * ex + dy * ey) * np.float32(1.0 / max(L2, 1e-9)), 0.0, 1.0)
    qx = dx - t * np.float32(ex)
    qy = dy - t * np.float32(ey)
    return np.sqrt(qx * qx + qy * qy) - np.float32(r)


class Tube:
    """A 3-D polyline (x, y, d in mm) with a radius per vertex: vessels, bowel, ribs, pancreas.

    The slice shows the set of in-plane points whose 3-D distance to the centreline is below the
    local radius, so oblique and horizontal runs appear elongated just as in a real axial cut.
    ``scale`` stretches the cross-section in x and y (e.g. a flattened IVC).
    """

    def __init__(self, pts: np.ndarray, radii: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.pts = np.asarray(pts, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.float64)
        self.scale = scale
        self.rmax = float(self.radii.max())
        self.dmin = float(self.pts[:, 2].min()) - self.rmax
        self.dmax = float(self.pts[:, 2].max()) + self.rmax

    def sd(self, grid: SliceGrid, grow: float = 0.0) -> tuple[Box, np.ndarray] | None:
        """(box, signed distance in mm) on this slice, radius grown by ``grow`` mm; None if absent."""
        d = grid.d
        if d < self.dmin - grow or d > self.dmax + grow:
            return None
        sx, sy = self.scale
        segs = []
        for k in range(len(self.pts) - 1):
            a, b = self.pts[k], self.pts[k + 1]
            r = max(self.radii[k], self.radii[k + 1]) + grow
            dd = b[2] - a[2]
            if abs(dd) < 1e-6:
                if abs(d - a[2]) > r:
                    continue
                t0, t1 = 0.0, 1.0
            else:
                t0, t1 = sorted(((d - r - a[2]) / dd, (d + r - a[2]) / dd))
                t0, t1 = max(t0, 0.0), min(t1, 1.0)
                if t0 > t1:
                    continue
            pa = a + t0 * (b - a)
            pb = a + t1 * (b - a)
            segs.append((k, min(pa[0], pb[0]) - r * sx, max(pa[0], pb[0]) + r * sx,
                         min(pa[1], pb[1]) - r * sy, max(pa[1], pb[1]) + r * sy))  # fmt: skip
        if not segs:
            return None
        big = grid.box(min(s[1] for s in segs), max(s[2] for s in segs),
                       min(s[3] for s in segs), max(s[4] for s in segs))  # fmt: skip
        if big is None:
            return None
        out = np.full(big.shape, np.float32(1e4), dtype=np.float32)
        inv_sx, inv_sy = np.float32(1.0 / sx), np.float32(1.0 / sy)
        mean_scale = np.float32(np.sqrt(sx * sy))
        for k, x0, x1, y0, y1 in segs:
            bx = grid.box(x0, x1, y0, y1)
            if bx is None:
                continue
            a, b = self.pts[k], self.pts[k + 1]
            ra, rb = self.radii[k] + grow, self.radii[k + 1] + grow
            ex, ey, ez = (b[0] - a[0]) / sx, (b[1] - a[1]) / sy, b[2] - a[2]
            L2 = ex * ex + ey * ey + ez * ez
            dx = (bx.X - np.float32(a[0])) * inv_sx
            dy = (bx.Y - np.float32(a[1])) * inv_sy
            dz = np.float32(d - a[2])
            t = np.clip(
                (dx * np.float32(ex) + dy * np.float32(ey) + dz * np.float32(ez)) / np.float32(L2), 0, 1
            )
            qx = dx - t * np.float32(ex)
            qy = dy - t * np.float32(ey)
            qz = dz - t * np.float32(ez)
            r = np.float32(ra) + t * np.float32(rb - ra)
            sd = (np.sqrt(qx * qx + qy * qy + qz * qz) - r) * mean_scale
            view = out[big.sub(bx)]
            np.minimum(view, sd, out=view)
        return big, out


class Texture:
    """A smooth random field (zero mean, unit std) in an organ's normalised coordinates.

    The field's depth planes are upsampled 8× (bilinear) once; sampling then reads the nearest
    pixel of the two planes around the depth and blends them: as smooth as trilinear sampling to
    within a fraction of an HU, and several times cheaper than ``map_coordinates`` on big organs.
    """

    UPSAMPLE = 8

    def __init__(self, rng: np.random.Generator, n: int = 24, nz: int = 10, sigma: float = 1.6) -> None:
        field = ndimage.gaussian_filter(rng.standard_normal((nz, n, n)), sigma=(sigma * 0.6, sigma, sigma))
        field -= field.mean()
        field /= field.std() + 1e-12
        self.field = field.astype(np.float32)
        self.n = n
        self.nz = nz
        self._up: np.ndarray | None = None  # made on first use: many patients never sample some textures

    def planes(self) -> np.ndarray:
        """All depth planes, upsampled in-plane: (nz, m, m)."""
        up = self._up
        if up is None:
            up = np.stack(
                [ndimage.zoom(p, self.UPSAMPLE, order=1, mode="nearest", grid_mode=False) for p in self.field]
            )
            self._up = up  # a plain attribute swap: threads at worst compute it twice
        return up

    def sample(self, U: np.ndarray, V: np.ndarray, w: float) -> np.ndarray:
        """Field at normalised in-plane coordinates U, V ∈ [-1, 1] (clamped outside) and depth fraction w."""
        planes = self.planes()
        wz = float(np.clip(w, 0.0, 1.0)) * (self.nz - 1)
        k = min(int(wz), self.nz - 2)
        t = np.float32(wz - k)
        m = planes.shape[1]
        s = np.float32((m - 1) / 2.0)
        i = np.clip(((U + 1) * s + np.float32(0.5)).astype(np.intp), 0, m - 1)
        j = np.clip(((V + 1) * s + np.float32(0.5)).astype(np.intp), 0, m - 1)
        flat = j * m + i
        lo = planes[k].reshape(-1)[flat]
        if t == 0:
            return lo
        hi = planes[k + 1].reshape(-1)[flat]
        return lo + t * (hi - lo)


def weighted_zero_mean(tex: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Remove the fraction-weighted mean so a texture never shifts an organ's mean HU."""
    wsum = float(f.sum())
    if wsum <= 0:
        return tex
    return tex - np.float32(float((tex * f).sum()) / wsum)
