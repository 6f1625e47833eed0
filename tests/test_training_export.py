"""`python -m training export`: same weights under a new name, the report kept in the sidecar."""

from __future__ import annotations

import json

import torch

from mfm_engine.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from mfm_engine.models.registry import build_model
from training.__main__ import main

TINY = {"name": "timeresnet", "preset": "tiny"}


def test_export_keeps_weights_and_adds_the_report(tmp_path, capsys):
    torch.manual_seed(0)
    src = save_checkpoint(
        build_model(TINY),
        tmp_path / "run" / "best",
        model_config=TINY,
        kind="flow",
        trained_on="test data",
        metrics={"mae_hu": 9.5},
        passthrough={"rule": "outside_hu_range", "blend_hu": 30.0},
        pixel_spacing_mm=(0.7, 0.8),
    )
    report = tmp_path / "demo_report.json"
    report.write_text(json.dumps({"passed": True, "organ_mae_ratio": 0.2}))
    assert (
        main(["export", str(src), str(tmp_path / "assets" / "demo.safetensors"), "--report", str(report)])
        == 0
    )
    out = tmp_path / "assets" / "demo.safetensors"
    meta = read_checkpoint_meta(out)
    assert meta.weights_path.name == "demo.safetensors" and meta.trained_on == "test data"
    assert meta.metrics["mae_hu"] == 9.5 and meta.extra["acceptance_report"]["passed"] is True
    assert meta.passthrough["blend_hu"] == 30.0 and meta.pixel_spacing_mm == (0.7, 0.8)
    a, b = load_checkpoint(src).model.state_dict(), load_checkpoint(out).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["export", str(src), str(tmp_path / "x.safetensors"), "--report", str(bad)]) == 2
    assert "JSON object" in capsys.readouterr().err
