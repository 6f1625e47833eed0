"""`mfm bench` runs and reports the trained checkpoint beside the configs (no timing is asserted)."""

from __future__ import annotations

import torch

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.cli import main
from mfm_engine.models.registry import build_model

TINY = {"name": "timeresnet", "preset": "tiny"}


def test_bench_table_has_a_row_for_the_checkpoint(tmp_path, capsys, single_torch_thread):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny_trained.safetensors"
    save_checkpoint(build_model(TINY), ckpt, model_config=TINY, kind="flow", trained_on="test network")
    args = ["bench", "--models", "timeresnet:tiny", "--size", "64", "--repeats", "1", "--precision", "fp32"]
    assert main([*args, "--model", str(ckpt)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| timeresnet/tiny")]
    assert len(rows) == 2 and "(tiny_trained.safetensors)" in rows[1]
    assert all("| fp32 |" in row for row in rows)
