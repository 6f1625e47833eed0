"""Phantom training data from the varied phantom (issue 14): the cache keeps each patient's pixel
spacing, marks the scan-circle padding in its labels and records what the scanner varied; a cache of
the classic phantom is never reused for a varied plan (or the other way round)."""

from __future__ import annotations

import numpy as np
import pytest

from mfm_engine.intensity import hu_to_model
from mfm_engine.phantom import LABELS, make_phantom_pair
from training.__main__ import main
from training.cache import SliceCache
from training.errors import CacheError
from training.phantom_data import PhantomPlan, phantom_to_cache

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PLAN = PhantomPlan(patients=3, seed0=2000, slices=3, size=96, motion_mm=0.0, splits=(1, 1, 1))


def test_a_varied_phantom_cache_keeps_spacing_padding_and_acquisition(tmp_path) -> None:
    phantom_to_cache(PLAN, tmp_path / "cache", progress=False)
    cache = SliceCache(tmp_path / "cache")
    assert cache.settings["phantom"]["acquisition"] == "varied"
    assert "varied acquisition" in cache.description
    assert cache.label_value("padding") == LABELS["padding"]
    for entry in cache.patients:
        seed = entry.info["phantom_seed"]
        pair = make_phantom_pair(seed, motion_mm=0.0, n_slices=3, size=96)
        assert entry.spacing == pytest.approx(list(pair.native.spacing))
        assert entry.info["pixel_mm"] == pytest.approx(pair.native.spacing[0])
        assert entry.info["padding_hu"] in (-1024.0, -2000.0, -3024.0)
        assert entry.info["padding_label"] == LABELS["padding"]
        for key in ("timing", "contrast_phase", "identity", "noise_hu", "arms"):
            assert key in entry.info
        arrays = cache.arrays(entry.id)
        pad = np.asarray(arrays["labels"]) == LABELS["padding"]
        np.testing.assert_array_equal(pad, pair.padding_mask)
        assert 0.2 < pad.mean() < 0.23
        # In model scale the padding is the range's floor in both series (zero velocity there).
        assert (np.asarray(arrays["native"])[pad] == -1.0).all()
        assert (np.asarray(arrays["contrast"])[pad] == -1.0).all()
        np.testing.assert_allclose(arrays["native"], hu_to_model(pair.native.hu), atol=1e-6)


def test_classic_and_varied_caches_are_not_mixed(tmp_path) -> None:
    classic = PhantomPlan(**{**PLAN.__dict__, "acquisition": "classic"})
    phantom_to_cache(classic, tmp_path / "cache", progress=False)
    assert SliceCache(tmp_path / "cache").settings["phantom"]["acquisition"] == "classic"
    with pytest.raises(CacheError, match="other settings"):
        phantom_to_cache(PLAN, tmp_path / "cache", progress=False)


def test_phantom_data_cli_takes_the_acquisition_and_identity_share(tmp_path, capsys) -> None:
    out = tmp_path / "c"
    argv = ["phantom-data", "--cache", str(out), "--patients", "3", "--seed0", "2100", "--slices", "2"]
    argv += ["--size", "64", "--splits", "1,1,1", "--identity-share", "1", "--quiet"]
    assert main(argv) == 0
    cache = SliceCache(out)
    assert cache.settings["phantom"]["identity_share"] == 1.0
    assert all(p.info["identity"] for p in cache.patients)
    assert "identity share 1" in capsys.readouterr().out
