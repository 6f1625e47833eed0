"""Training configs: every shipped config loads; bad values are refused by name, naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mfm_engine.checkpoint import read_checkpoint_meta
from mfm_engine.demo import demo_checkpoint
from mfm_engine.models import resolve_model_config
from training.config import config_from_dict, load_config
from training.errors import ConfigError
from training.trainer import learning_rate

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.json"))


def _base(**over) -> dict:
    doc = {
        "name": "t",
        "model": {"name": "timeresnet", "preset": "tiny"},
        "data": {"cache": "runs/none"},
    }
    doc.update(over)
    return doc


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.kind in ("flow", "regression", "ddpm")
    assert (cfg.direction is None) == (cfg.kind == "flow")
    assert cfg.out


def test_shipped_configs_cover_the_paper_and_the_demo():
    names = {p.stem for p in CONFIGS}
    assert {"demo_flow", "demo_regression", "paper_flow_timeresnet", "paper_ddpm_unet"} <= names
    demo = load_config(CONFIGS[[p.stem for p in CONFIGS].index("demo_flow")])
    assert demo.model == {
        "name": "timeresnet",
        "preset": "demo",
        "gain_offset_head": True,
        "upsample_head": "smooth_shuffle",
    }
    assert demo.data.phantom is not None and demo.data.phantom.motion_mm == 0.0
    # The baseline is trained "the same way": same network, data and schedule.
    baseline = load_config(CONFIGS[[p.stem for p in CONFIGS].index("demo_regression")])
    assert (baseline.kind, baseline.direction, baseline.model) == ("regression", "c2n", demo.model)
    assert (baseline.data, baseline.optim, baseline.train) == (demo.data, demo.optim, demo.train)
    paper = load_config(CONFIGS[[p.stem for p in CONFIGS].index("paper_flow_timeresnet")])
    # The shipped demo weights are this config's network (the sidecar stores the resolved config).
    shipped = demo_checkpoint()
    if shipped is not None:
        meta = read_checkpoint_meta(shipped)
        assert meta.model == resolve_model_config(demo.model) and meta.kind == "flow"
    # The paper's recipe keeps the paper's head and uniform times.
    assert paper.flow.endpoint_fraction == 0.0 and "gain_offset_head" not in paper.model
    assert (paper.optim.lr, paper.optim.batch_size, paper.train.epochs) == (2e-5, 2, 30)
    assert tuple(paper.optim.betas) == (0.9, 0.999)


def test_defaults_are_the_papers():
    cfg = config_from_dict(_base())
    assert cfg.optim.lr == 2e-5 and cfg.optim.batch_size == 2 and list(cfg.optim.betas) == [0.9, 0.999]
    assert cfg.kind == "flow" and cfg.direction is None


def test_toml_config(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        'name = "x"\nkind = "regression"\n'
        '[model]\nname = "timeresnet"\npreset = "tiny"\n[data]\ncache = "c"\n'
    )
    cfg = load_config(p)
    assert cfg.kind == "regression" and cfg.direction == "c2n"


def test_unknown_model_is_named(tmp_path):
    p = _write(tmp_path, _base(model={"name": "resnet9000"}))
    with pytest.raises(ConfigError, match=r"cfg\.json.*resnet9000.*known"):
        load_config(p)


def test_unknown_preset_is_named(tmp_path):
    p = _write(tmp_path, _base(model={"name": "timeresnet", "preset": "huge"}))
    with pytest.raises(ConfigError, match="huge"):
        load_config(p)


def test_unknown_solver_is_named(tmp_path):
    p = _write(tmp_path, _base(validate={"solver": "rk45x"}))
    with pytest.raises(ConfigError, match=r"cfg\.json.*validate\.solver.*rk45x"):
        load_config(p)


def test_unknown_key_is_named(tmp_path):
    p = _write(tmp_path, _base(optim={"learning_rate": 1e-3}))
    with pytest.raises(ConfigError, match=r"cfg\.json\.optim: unknown key.*learning_rate"):
        load_config(p)


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"kind": "gan"}, "kind must be one of"),
        ({"kind": "flow", "direction": "c2n"}, "both directions"),
        ({"kind": "regression", "direction": "sideways"}, "direction must be"),
        ({"optim": {"lr": -1.0}}, "lr > 0"),
        ({"optim": {"schedule": "step"}}, "schedule"),
        ({"train": {"epochs": 0}}, "epochs"),
        ({"train": {"precision": "fp8"}}, "precision"),
        ({"data": {"cache": "c", "train_split": "val"}}, "train_split"),
        ({"data": {"cache": ""}}, "data.cache"),
        ({"data": {"cache": "c", "crop": 4}}, "crop"),
        ({"optim": {"batch_size": "two"}}, "whole number"),
        ({"flow": {"endpoint_fraction": 1.5}}, r"flow\.endpoint_fraction.*\[0, 1\]"),
        ({"data": {"cache": "c", "phantom": {"patients": 5, "splits": [1, 1, 1]}}}, "adding up"),
    ],
)
def test_bad_values(tmp_path, over, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(_write(tmp_path, _base(**over)))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not a valid JSON"):
        load_config(bad)


def test_overrides(tmp_path):
    p = _write(tmp_path, _base())
    cfg = load_config(
        p, ["optim.lr=0.01", "train.epochs=3", "out=runs/x", "data.crop=null", 'validate.organs=["aorta"]']
    )
    assert cfg.optim.lr == 0.01 and cfg.train.epochs == 3 and cfg.out == "runs/x" and cfg.data.crop is None
    assert cfg.validate.organs == ["aorta"]
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(p, ["optim.lr"])


def test_ddpm_gets_one_conditioning_channel(tmp_path):
    cfg = load_config(_write(tmp_path, _base(kind="ddpm")))
    assert cfg.model["cond_channels"] == 1 and cfg.direction == "c2n"
    with pytest.raises(ConfigError, match="cond_channels"):
        load_config(_write(tmp_path, _base(kind="ddpm", model={"name": "timeresnet", "cond_channels": 2})))
    with pytest.raises(ConfigError, match="only for kind 'ddpm'"):
        load_config(
            _write(tmp_path, _base(model={"name": "timeresnet", "preset": "tiny", "cond_channels": 1}))
        )


def test_learning_rate_schedule():
    cfg = config_from_dict(
        _base(optim={"lr": 1e-3, "schedule": "cosine", "warmup_steps": 10, "min_lr": 1e-5})
    )
    total = 110
    assert learning_rate(0, cfg, total) == pytest.approx(1e-4)
    assert learning_rate(9, cfg, total) == pytest.approx(1e-3)
    assert learning_rate(10, cfg, total) == pytest.approx(1e-3)
    # Half way through the cosine: the mean of lr and min_lr.
    assert learning_rate(60, cfg, total) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(110, cfg, total) == pytest.approx(1e-5)
    const = config_from_dict(_base())
    assert all(math.isclose(learning_rate(s, const, 100), 2e-5) for s in (0, 50, 99))
