"""CPU precision by measurement: the decision rule, a real (small) measurement and the cache round trip.

Timings are measured here but never asserted: only that the decision follows from the measured rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mfm_engine import precision as P
from mfm_engine.models.registry import build_model
from mfm_engine.translate import Translator
from mfm_engine.volume import Volume

TINY = {"name": "timeresnet", "preset": "tiny"}


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """precision="auto" measures (the suite's fp32 override removed) into a private cache folder."""
    monkeypatch.delenv(P.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("MFM_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / P.CACHE_FILE


def _row(precision, cl, ms, mean=0.0, p999=0.0):
    return {
        "precision": precision,
        "channels_last": cl,
        "ms_per_slice": ms,
        "mean_abs_hu": mean,
        "p999_abs_hu": p999,
    }


@pytest.mark.parametrize(
    "rows,expected",
    [
        (
            [_row("fp32", False, 100), _row("fp32", True, 95), _row("bf16", True, 56, 0.3, 2.0)],
            ("bf16", True),
        ),
        (
            [_row("fp32", False, 100), _row("fp32", True, 95), _row("bf16", True, 56, 1.2, 2.0)],
            ("fp32", False),
        ),
        (
            [_row("fp32", False, 100), _row("fp32", True, 95), _row("bf16", True, 56, 0.3, 5.5)],
            ("fp32", False),
        ),
        (
            [_row("fp32", False, 100), _row("fp32", True, 80), _row("bf16", True, 56, 0.5, 8.0)],
            ("fp32", True),
        ),
        (
            [_row("fp32", False, 100), _row("fp32", True, 99), _row("bf16", True, 93, 0.1, 1.0)],
            ("fp32", False),
        ),
        (
            [_row("fp32", False, 50), _row("fp32", True, 60), _row("bf16", True, 70, 0.1, 1.0)],
            ("fp32", False),
        ),
        (
            [_row("fp32", False, 100), _row("fp32", True, 60), _row("bf16", True, 70, 0.1, 1.0)],
            ("fp32", True),
        ),
    ],
    ids=[
        "bf16-wins",
        "bf16-mean-off",
        "bf16-p999-off",
        "bf16-off-cl-wins",
        "gain-too-small",
        "fp32-fastest",
        "cl-beats-bf16",
    ],
)
def test_decision_rule(rows, expected):
    precision, cl, reason = P.decide(rows)
    assert (precision, cl) == expected
    if rows[2]["mean_abs_hu"] > 1 or rows[2]["p999_abs_hu"] > 5:
        assert "bf16 rejected" in reason


def test_real_measurement_and_cache_round_trip(measuring, monkeypatch):
    torch.manual_seed(0)
    model = build_model(TINY)
    kwargs = dict(slices=2, size=64, repeats=1)
    first = P.choose_cpu_precision(model, **kwargs)
    assert first.source == "measured" and len(first.measurements) == 3
    assert [(r["precision"], r["channels_last"]) for r in first.measurements] == list(P.CANDIDATES)
    fp32 = first.measurements[0]
    assert fp32["mean_abs_hu"] == 0 and all(r["ms_per_slice"] > 0 for r in first.measurements)
    assert all(np.isfinite(r["p999_abs_hu"]) for r in first.measurements)
    assert (first.precision, first.channels_last, first.reason) == P.decide(first.measurements)
    # The input of a measurement is left as it was: contiguous, eval mode.
    assert not model.training and next(model.parameters()).is_contiguous()

    doc = json.loads(measuring.read_text())
    assert list(doc) == [first.key] and doc[first.key]["precision"] == first.precision
    assert torch.__version__ in first.key and P.cpu_model_name() in first.key

    # Second time: from the cache, no measurement.
    monkeypatch.setattr(P, "measure", lambda *a, **k: pytest.fail("measured again despite the cache"))
    again = P.choose_cpu_precision(model, **kwargs)
    assert again.source == "cache"
    assert (again.precision, again.channels_last, again.measurements) == (
        first.precision,
        first.channels_last,
        first.measurements,
    )
    monkeypatch.undo()
    monkeypatch.delenv(P.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("MFM_STUDIO_CACHE_DIR", str(measuring.parent))

    # Another model config is another entry; the first one stays.
    other = P.choose_cpu_precision(build_model({**TINY, "base_channels": 8}), **kwargs)
    assert other.source == "measured" and other.key != first.key
    assert set(json.loads(measuring.read_text())) == {first.key, other.key}

    # A damaged cache file is measured over, not an error.
    measuring.write_text("{not json")
    assert P.choose_cpu_precision(model, **kwargs).source == "measured"
    assert first.key in json.loads(measuring.read_text())


def test_translator_auto_uses_the_cached_choice(measuring):
    model = build_model(TINY)
    key = P.machine_key(model, 512)
    measuring.parent.mkdir(parents=True)
    entry = {"precision": "bf16", "channels_last": True, "measurements": [], "reason": "planted"}
    measuring.write_text(json.dumps({key: entry}))
    tr = Translator(model, device="cpu")  # precision="auto"
    assert tr.precision == "bf16" and tr.channels_last
    assert tr.precision_choice.source == "cache" and tr.precision_choice.reason == "planted"
    out = tr.translate_volume(Volume(np.zeros((1, 32, 32), np.float32)))
    assert out.meta["provenance"]["precision"] == "bf16" and out.meta["provenance"]["channels_last"]
    # Forced precisions never measure or read the cache.
    assert Translator(model, device="cpu", precision="fp32").precision_choice is None


def test_environment_override_and_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv(P.ENV_OVERRIDE, "bf16")
    choice = P.choose_cpu_precision(build_model(TINY))
    assert (choice.precision, choice.channels_last, choice.source) == ("bf16", True, "environment")
    monkeypatch.delenv("MFM_STUDIO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert P.cache_dir() == tmp_path / "xdg" / "mfm-studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert P.cache_dir() == tmp_path / "home" / ".cache" / "mfm-studio"
