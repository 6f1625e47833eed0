"""Data-parallel training: two CPU processes (gloo) under torchrun end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.phantom_data import PhantomPlan, phantom_to_cache

ROOT = Path(__file__).resolve().parents[1]


def _sha_of_checkpoint(path: Path) -> str:
    from mfm_engine.checkpoint import load_checkpoint
    from training.trainer import weights_sha256

    return weights_sha256(load_checkpoint(path).model)


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    torch.set_num_threads(1)
    phantom_to_cache(
        PhantomPlan(patients=4, seed0=3200, slices=4, size=64, splits=(2, 1, 1)),
        tmp_path / "cache",
        progress=False,
    )
    cfg = {
        "name": "ddp",
        "kind": "flow",
        "model": {"name": "timeresnet", "preset": "tiny"},
        "data": {"cache": str(tmp_path / "cache"), "crop": 32, "augment": True},
        "optim": {"lr": 1e-3, "batch_size": 2},
        "train": {"epochs": 2, "steps_per_epoch": 2, "log_every": 1, "tensorboard": False},
        "validate": {"max_patients": 1, "slices_per_patient": 1},
        "out": str(tmp_path / "run"),
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "training",
            "fit",
            "--config",
            str(tmp_path / "cfg.json"),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished at step 4 of 4") == 1  # rank 0 speaks for the run
    assert "×2" in proc.stderr and "batch 2×2" in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["finished"]
    hashes = summary["rank_weight_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    # …and they are the weights that were saved.
    assert _sha_of_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors") == hashes[0]
    # Each process saw its own half of every pass: 4 steps × 2 processes × batch 2 = 16 slices.
    loss = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert len(loss) == 5
