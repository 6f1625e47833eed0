"""The viewer's Qt-free logic: orientation, shared cursor, difference maps, caches, reference grids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from mfm_engine.errors import GeometryMismatchError
from mfm_engine.volume import PLANES, Volume
from mfm_viewer.logic.cursor import CursorModel, view_range, zoom_about
from mfm_viewer.logic.difference import colour_of, difference, diverging_lut, overlay_lut, suggested_range
from mfm_viewer.logic.engine_key import EngineKey, PreviewCache, SlicePreview, default_direction
from mfm_viewer.logic.orientation import anatomical_name, normal_position_text, orientation_for
from mfm_viewer.logic.recent import push_recent
from mfm_viewer.logic.reference import check_reference, resample_onto
from mfm_viewer.logic.session import DIFF_INPUT, DIFF_REFERENCE, INPUT, REFERENCE, SYNTHETIC, Session


def _volume(direction=None, shape=(6, 7, 8), spacing=(0.8, 0.9, 2.5)) -> Volume:
    direction = np.eye(3) if direction is None else direction
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 100, shape).astype(np.float32), spacing, (-10.0, 20.0, 30.0), direction)


def _axis_directions():
    """Every axis-aligned direction matrix: permutations × sign flips (48)."""
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            d = np.zeros((3, 3))
            for col, (row, s) in enumerate(zip(perm, signs, strict=True)):
                d[row, col] = s
            yield d


# LPS: +x = patient left, +y = posterior, +z = superior.
_EXPECT = {  # plane name shown -> (LPS axis down the screen, its sign), (axis across, sign)
    "Axial": ((1, +1), (0, +1)),  # down = towards posterior, across = towards patient left
    "Coronal": ((2, -1), (0, +1)),  # down = inferior, across = patient left
    "Sagittal": ((2, -1), (1, +1)),  # down = inferior, across = posterior
}


@pytest.mark.parametrize("direction", list(_axis_directions()), ids=lambda d: str(d.astype(int).tolist()))
def test_every_plane_shows_radiological_orientation(direction):
    vol = _volume(direction)
    shape_xyz = vol.shape[::-1]
    for plane in PLANES:
        o = orientation_for(vol, plane)
        name = anatomical_name(vol, plane)
        (down_axis, down_sign), (across_axis, across_sign) = _EXPECT[name]
        n_v, n_h = o.display_shape(shape_xyz)
        ijk = tuple(n // 2 for n in shape_xyz)
        p00 = vol.index_to_physical(o.display_to_ijk(0, 0, ijk, shape_xyz))
        p10 = vol.index_to_physical(o.display_to_ijk(n_v - 1, 0, ijk, shape_xyz))
        p01 = vol.index_to_physical(o.display_to_ijk(0, n_h - 1, ijk, shape_xyz))
        assert np.sign(p10 - p00)[down_axis] == down_sign
        assert np.sign(p01 - p00)[across_axis] == across_sign
        # The displayed array agrees with the index mapping, and the letters with the geometry.
        img = o.display(vol.slice(plane, ijk[o.normal_axis]))
        i, j, k = o.display_to_ijk(1, 2, ijk, shape_xyz)
        assert img[1, 2] == vol.hu[k, j, i]
        assert o.ijk_to_display((i, j, k), shape_xyz) == (1, 2)
        letters = {"Axial": ("A", "R"), "Coronal": ("S", "R"), "Sagittal": ("S", "A")}[name]
        assert (o.letters["top"], o.letters["left"]) == letters


def test_identity_axial_is_index_order_and_slice_position_in_mm():
    vol = _volume()
    o = orientation_for(vol, "axial")
    assert (o.v_flip, o.h_flip, o.transposed) == (False, False, False)
    assert o.letters == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert orientation_for(vol, "coronal").v_flip  # superior (high z index) at the top
    assert normal_position_text(vol, "axial", 2) == "z 35.0 mm"  # origin z 30 + 2 × 2.5


def test_cursor_clamps_notifies_and_zooms_about_anchor():
    m = CursorModel((8, 7, 6))
    seen: list[str] = []
    unsubscribe = m.subscribe(seen.append)
    assert m.ijk == (4, 3, 3)
    m.set_ijk((100, -5, 2))
    assert m.ijk == (7, 0, 2) and seen == ["position"]
    m.step(2, 10)
    assert m.ijk[2] == 5
    m.set_window(0, 40)
    assert m.window == (1.0, 40.0) and seen[-1] == "window"
    m.set_window(400, 40)
    assert m.levels == (-160.0, 240.0)
    m.drag_window(25, 0)
    assert m.width > 400 and m.level == 40
    n_heard = len(seen)
    unsubscribe()
    m.step(0, -1)
    assert len(seen) == n_heard
    # zooming about an anchor keeps that point where it was on screen
    center, anchor = (50.0, 40.0), (70.0, 10.0)
    new_center = zoom_about(center, anchor, 1.0, 4.0)
    (x0, x1), (y0, y1) = view_range((100.0, 80.0), 1.0, center)
    (u0, u1), (v0, v1) = view_range((100.0, 80.0), 4.0, new_center)
    assert (anchor[0] - x0) / (x1 - x0) == pytest.approx((anchor[0] - u0) / (u1 - u0))
    assert (anchor[1] - y0) / (y1 - y0) == pytest.approx((anchor[1] - v0) / (v1 - v0))


def test_difference_colour_map_is_centred_on_zero():
    lut = diverging_lut(257)
    assert tuple(lut[128, :3]) == (247, 247, 247)
    assert colour_of(0.0, 100.0, lut) == (247, 247, 247)
    r, g, b = colour_of(100.0, 100.0, lut)
    assert r > 150 and b < 60  # positive (added HU) is red
    r, g, b = colour_of(-500.0, 100.0, lut)
    assert b > 150 and r < 60  # negative (removed HU, e.g. iodine) is blue, clipped at −range
    assert overlay_lut(0.5, 257)[128, 3] == 0 and overlay_lut(0.5, 257)[0, 3] == 128
    d = difference(np.full((4, 4), 50.0), np.full((4, 4), 80.0))
    assert d.dtype == np.float32 and np.all(d == -30)
    assert suggested_range(d) == 30.0
    with pytest.raises(ValueError):
        difference(np.zeros((2, 2)), np.zeros((3, 2)))


def test_preview_cache_is_keyed_by_settings_and_bounded():
    cache = PreviewCache(max_slices=2)
    a, b = EngineKey("m", "c2n", "euler", 1), EngineKey("m", "c2n", "heun", 1)
    p = SlicePreview(np.zeros((2, 2), np.float32), 1, 0.1)
    cache.put(a, 3, p)
    assert cache.get(a, 3) is p and cache.get(b, 3) is None and cache.get(a, 4) is None
    cache.put(b, 3, p)
    cache.get(a, 3)  # a is now the most recent
    cache.put(a, 5, p)
    assert cache.get(b, 3) is None and cache.get(a, 3) is p and len(cache) == 2
    assert default_direction("native") == "n2c" and default_direction("arterial") == "c2n"
    assert default_direction(None) == "c2n"
    assert push_recent(["a", "b", "c"], "c", limit=2) == ["c", "a"]


def test_reference_on_another_grid_is_refused_with_both_geometries():
    vol = _volume()
    other = Volume(np.zeros((6, 7, 8), np.float32), (1.0, 1.0, 1.0))
    other.meta["source_path"] = "/data/native.nii.gz"
    with pytest.raises(GeometryMismatchError) as err:
        check_reference(vol, other)
    text = str(err.value)
    assert "/data/native.nii.gz" in text and vol.geometry_text() in text and other.geometry_text() in text
    check_reference(vol, vol.copy())


def _to_sitk(vol: Volume) -> sitk.Image:
    img = sitk.GetImageFromArray(vol.hu)
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin)
    img.SetDirection(vol.direction.flatten().tolist())
    return img


def test_resample_onto_matches_simpleitk_linear_resampling():
    rng = np.random.default_rng(1)
    ref = Volume(
        rng.normal(0, 200, (12, 14, 16)).astype(np.float32),
        (1.1, 0.9, 2.0),
        (-3.0, 2.0, -5.0),
        np.diag([1.0, -1.0, 1.0]),
        # An uneven scanner stack: its positions must not follow it onto the target's grid.
        {"slice_positions_lps": [[-3.0, 2.0, -5.0 + 2.1 * k] for k in range(12)]},
    )
    target = Volume(np.zeros((12, 10, 11), np.float32), (1.5, 1.2, 2.5), (0.0, -1.0, 0.0))
    ours = resample_onto(ref, target)
    assert not ours.is_regularised and "slice_positions_lps" not in ours.meta
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(_to_sitk(target))
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(-1000.0)
    theirs = sitk.GetArrayFromImage(f.Execute(_to_sitk(ref)))
    # Voxels whose sample point is well inside the reference agree; borders differ by convention.
    inside = (theirs != -1000.0) & (ours.hu != -1000.0)
    assert inside.sum() > 200
    np.testing.assert_allclose(ours.hu[inside], theirs[inside], atol=1e-2)
    assert ours.same_geometry(target) and "resampled" in ours.warnings[-1]


def test_session_panes_and_slices():
    vol = _volume()
    vol.meta["phase"] = "arterial"
    s = Session(vol)
    assert [p.key for p in s.panes()] == [INPUT]
    key = EngineKey("m", "c2n", "euler", 1)
    s.current_key = key
    assert [p.key for p in s.panes()] == [INPUT, SYNTHETIC, DIFF_INPUT]
    assert s.slice(SYNTHETIC, "axial", 2) is None and s.slice(DIFF_INPUT, "axial", 2) is None
    s.previews.put(key, 2, SlicePreview(vol.hu[2] - 100, 1, 0.1))
    np.testing.assert_allclose(s.slice(DIFF_INPUT, "axial", 2), -100, atol=1e-3)
    assert s.slice(SYNTHETIC, "coronal", 2) is None  # no volume yet: other planes are empty
    s.set_synthetic(vol.with_hu(vol.hu + 5, synthetic=True), key)
    assert s.synthetic_is_current
    assert s.hu_at(SYNTHETIC, (1, 1, 2)) == pytest.approx(vol.hu[2, 1, 1] - 100)  # preview first
    assert s.hu_at(SYNTHETIC, (1, 1, 3)) == pytest.approx(vol.hu[3, 1, 1] + 5)
    s.set_reference(vol.with_hu(vol.hu - 1, phase="native"))
    specs = s.panes()
    assert [p.key for p in specs] == [INPUT, SYNTHETIC, REFERENCE, DIFF_INPUT, DIFF_REFERENCE]
    assert specs[1].synthetic and not specs[0].synthetic and specs[2].title == "Reference · native"
    assert [p.overlay for p in s.panes("overlay")] == [DIFF_INPUT, None, DIFF_REFERENCE]
    assert [p.key for p in s.panes("off")] == [INPUT, SYNTHETIC, REFERENCE]
    s.current_key = EngineKey("m", "c2n", "heun", 2)
    assert not s.synthetic_is_current
