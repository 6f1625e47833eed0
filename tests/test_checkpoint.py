"""Checkpoints: safetensors + JSON sidecar round trip, and every bad file as a clear error."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from mfm_engine import __version__
from mfm_engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointMeta,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from mfm_engine.errors import CheckpointError, MFMError
from mfm_engine.models import build_model, count_parameters

TINY = {"name": "timeresnet", "preset": "tiny"}


def _model(config: dict = TINY, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(config).eval()


def _save(model: torch.nn.Module, path: Path, **kw) -> Path:
    kw.setdefault("kind", "flow")
    kw.setdefault("trained_on", "procedural phantom, seeds 0-9 (test)")
    return save_checkpoint(model, path, model_config=model.mfm_config, **kw)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    model = _model()
    return model, _save(model, tmp_path / "tiny", metrics={"mae_hu": 12.5})


def _edit_sidecar(weights: Path, edit) -> None:
    sidecar = weights.with_suffix(".json")
    doc = json.loads(sidecar.read_text())
    edit(doc)
    sidecar.write_text(json.dumps(doc))


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs(saved):
    model, weights = saved
    assert weights.name == "tiny.safetensors" and weights.is_file()
    assert weights.with_suffix(".json").is_file()
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([0.1, 0.9])
    for path in (weights, weights.with_suffix(".json"), str(weights)):
        loaded = load_checkpoint(path)
        assert not loaded.model.training
        with torch.inference_mode():
            assert torch.equal(model(x, t), loaded.model(x, t))


def test_sidecar_describes_the_checkpoint(saved):
    model, weights = saved
    meta = read_checkpoint_meta(weights)
    assert isinstance(meta, CheckpointMeta)
    assert meta.model_name == "timeresnet"
    assert meta.model == model.mfm_config
    assert meta.kind == "flow"
    assert meta.hu_range == (-1000.0, 1000.0)
    assert meta.trained_on.startswith("procedural phantom")
    assert meta.metrics == {"mae_hu": 12.5}
    assert meta.format_version == FORMAT_VERSION
    assert meta.engine_version == __version__
    assert meta.parameter_count == count_parameters(model)
    assert meta.created and meta.weights_sha256
    assert meta.ddpm is None and meta.direction is None
    assert "tiny" in meta.label and "timeresnet/tiny" in meta.label


def test_monai_backbone_round_trip(tmp_path):
    model = _model({"name": "monai_unet", "preset": "demo"})
    weights = _save(model, tmp_path / "unet.safetensors")
    loaded = load_checkpoint(weights)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x, 0.4), loaded.model(x, 0.4))


def test_tied_weights_are_saved_and_stay_tied(tmp_path):
    model = _model()
    # Tie two A/B layers of the same shape: safetensors refuses shared storage as such.
    model.mid_block2.time.proj = model.mid_block1.time.proj
    weights = _save(model, tmp_path / "tied")
    loaded = load_checkpoint(weights).model
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        assert torch.equal(model(x, 0.5), loaded(x, 0.5))


def test_ddpm_and_regression_record_their_extra_fields(tmp_path):
    model = _model()
    schedule = {"num_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    weights = _save(model, tmp_path / "ddpm", kind="ddpm", ddpm_schedule=schedule, direction="n2c")
    meta = read_checkpoint_meta(weights)
    assert meta.kind == "ddpm" and meta.ddpm == schedule and meta.direction == "n2c"
    meta = read_checkpoint_meta(_save(model, tmp_path / "reg", kind="regression", direction="c2n"))
    assert meta.kind == "regression" and meta.direction == "c2n"
    with pytest.raises(CheckpointError, match="schedule"):
        _save(model, tmp_path / "bad", kind="ddpm", direction="c2n")
    with pytest.raises(CheckpointError, match="direction"):
        _save(model, tmp_path / "bad", kind="flow", direction="c2n")  # a flow serves both
    with pytest.raises(CheckpointError, match="direction"):
        _save(model, tmp_path / "bad", kind="regression")
    with pytest.raises(CheckpointError, match="kind"):
        _save(model, tmp_path / "bad", kind="gan")


def test_save_writes_no_partial_files_and_a_failed_save_keeps_the_old_checkpoint(saved):
    model, weights = saved
    before = (weights.read_bytes(), weights.with_suffix(".json").read_bytes())
    with pytest.raises(CheckpointError, match="JSON"):
        _save(model, weights, metrics={"bad": object()})
    assert (weights.read_bytes(), weights.with_suffix(".json").read_bytes()) == before
    assert sorted(p.name for p in weights.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]


def test_save_refuses_a_config_that_does_not_build_these_weights(tmp_path):
    model = _model()
    wrong = {**model.mfm_config, "base_channels": 8}
    with pytest.raises(CheckpointError, match="shape mismatches"):
        save_checkpoint(model, tmp_path / "x", model_config=wrong, kind="flow", trained_on="-")
    assert list(tmp_path.iterdir()) == []


# -- bad files ----------------------------------------------------------------------------------


def _raises(path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert isinstance(info.value, MFMError)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    _raises(path, str(path), "not a safetensors file")


def test_a_tiny_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"abc")
    _raises(path, str(path), "not a safetensors file")


def test_a_header_that_is_not_json_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "garbled.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"{{{{" + b"\0" * 16)
    _raises(path, str(path), "header is not JSON")


class _Tripwire:
    """Unpickling this creates a folder: proof that a loader unpickled (i.e. ran code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_renamed_safetensors_is_refused_without_unpickling(tmp_path, saved):
    model, _ = saved
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.safetensors"
    torch.save({"state": model.state_dict(), "trap": _Tripwire(marker)}, path)
    _raises(path, str(path), "pickle", "never unpickles")
    assert not marker.exists()


def test_a_pt_file_given_directly_is_refused_without_unpickling(tmp_path, saved):
    model, _ = saved
    marker = tmp_path / "unpickled"
    for name, kw in (("model.pt", {}), ("legacy.pth", {"_use_new_zipfile_serialization": False})):
        path = tmp_path / name
        torch.save({"net": model.state_dict(), "trap": _Tripwire(marker)}, path, **kw)
        _raises(path, str(path), "pickle", "never unpickles")
    assert not marker.exists()


def test_other_files_and_missing_paths(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    _raises(other, str(other), "not a checkpoint")
    _raises(tmp_path / "nothing.safetensors", "does not exist")


def test_missing_sidecar(saved):
    _, weights = saved
    weights.with_suffix(".json").unlink()
    _raises(weights, str(weights), "no sidecar", "tiny.json")


def test_missing_weights(saved):
    _, weights = saved
    weights.unlink()
    _raises(weights.with_suffix(".json"), "tiny.safetensors", "do not exist")


def test_sidecar_with_an_unknown_model_name(saved):
    _, weights = saved
    _edit_sidecar(weights, lambda d: d["model"].update(name="transformer-xxl"))
    _raises(weights, "tiny.json", "unknown model name 'transformer-xxl'")


def test_config_that_does_not_match_the_weights_lists_shape_mismatches(saved):
    _, weights = saved
    _edit_sidecar(weights, lambda d: d["model"].update(base_channels=8))
    err = _raises(weights, str(weights), "do not match", "shape mismatches", "conv_in.weight")
    assert "(16, 32, 3, 3)" in str(err) and "(8, 32, 3, 3)" in str(err)  # 2 inputs × 4×4 stem


def test_config_that_does_not_match_the_weights_lists_missing_and_unexpected_keys(saved):
    _, weights = saved
    _edit_sidecar(weights, lambda d: d["model"].update(num_res_blocks=2))
    _raises(weights, "missing", "down.0.blocks.1")
    _edit_sidecar(weights, lambda d: d["model"].update(num_res_blocks=1, mid_attention=False))
    _raises(weights, "unexpected", "mid_attn")


def test_weights_swapped_under_a_sidecar(tmp_path, saved):
    _, weights = saved
    other = _save(_model({"name": "monai_unet", "preset": "demo"}), tmp_path / "unet")
    shutil.copyfile(other, weights)
    _raises(weights, str(weights), "SHA-256")
    with pytest.raises(CheckpointError, match="missing") as info:
        load_checkpoint(weights, verify=False)
    assert "unexpected" in str(info.value)


def test_unsupported_format_version(saved):
    _, weights = saved
    _edit_sidecar(weights, lambda d: d.update(format_version=99))
    _raises(weights, "tiny.json", "unsupported format version 99")


def test_malformed_json_sidecar(saved):
    _, weights = saved
    sidecar = weights.with_suffix(".json")
    sidecar.write_text('{"format": "mfm-checkpoint", "format_version": 1,,}')
    _raises(weights, str(sidecar), "not valid JSON", "line 1")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(format="something-else"), "not an MFM checkpoint sidecar"),
        (lambda d: d.update(kind="gan"), "kind must be one of"),
        (lambda d: d.update(hu_range=[1000, -1000]), "hu_range"),
        (lambda d: d.pop("model"), "no model config"),
        (lambda d: d.update(weights="other.safetensors"), "describes weights 'other.safetensors'"),
    ],
)
def test_other_sidecar_problems(saved, edit, fragment):
    _, weights = saved
    _edit_sidecar(weights, edit)
    _raises(weights, "tiny.json", fragment)


def test_read_meta_does_not_need_loadable_weights(saved):
    # Metadata comes from the sidecar alone (plus the weights' header), so a model picker can
    # list checkpoints without building 125 M-parameter networks.
    _, weights = saved
    _edit_sidecar(weights, lambda d: d["model"].update(base_channels=8))
    assert read_checkpoint_meta(weights).model["base_channels"] == 8
