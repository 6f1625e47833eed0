"""Training configs: one JSON (or TOML) file → a validated :class:`TrainConfig`, stored in every checkpoint.

A config has a few sections (every key optional except ``model`` and ``data.cache``)::

    {"name": "demo_flow", "kind": "flow", "model": {"name": "timeresnet", "preset": "demo"},
     "data": {"cache": "runs/phantom_cache", "crop": 192, "phantom": {"patients": 40}},
     "optim": {"lr": 1e-3, "batch_size": 8, "schedule": "cosine", "warmup_steps": 100},
     "train": {"epochs": 10, "steps_per_epoch": 200}, "validate": {"solver": "euler", "steps": 1},
     "out": "runs/demo_flow"}

Unknown keys, unknown model names/presets and unknown solvers are refused by name, naming the
file. Relative paths are taken relative to the current directory (commands run from the project
root). ``--set section.key=value`` on the command line overrides any value (JSON-parsed).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfm_engine.errors import MFMError
from mfm_engine.models import ModelConfigError, resolve_model_config
from training.errors import ConfigError

KINDS = ("flow", "regression", "ddpm")
DIRECTIONS = ("c2n", "n2c")
SPLITS = ("train", "test", "holdout")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The organs the demo acceptance watches (phantom label names): aorta, renal cortex, spleen.
DEFAULT_ORGANS = ("aorta", "kidney_cortex", "spleen")


@dataclass
class PhantomSpec:
    """Phantom patients to build the cache from when it does not exist yet (``phantom-data``)."""

    patients: int = 40
    seed0: int = 1000
    slices: int = 30
    size: int = 512
    motion_mm: float = 0.0
    # Patients per split (train, test, holdout); None: 80 % / 10 % / 10 % (at least one each).
    splits: list[int] | None = None
    registration: str = "none"
    # The phantom's scanner variety (mfm_engine.phantom): "varied" (spacing, scan circle and padding,
    # kernel noise, timing, arms, identity patients) or "classic" (the phantom before issue 14).
    acquisition: str = "varied"
    # Share of patients without iodine in the contrast series; None: the generator's default (0.1 varied).
    identity_share: float | None = None


@dataclass
class DataConfig:
    """Where the training slices come from and how they are augmented."""

    cache: str = ""
    phantom: PhantomSpec | None = None
    train_split: str = "train"
    val_split: str = "test"
    # Random square crop (pixels) after augmentation; None trains on whole slices.
    crop: int | None = None
    augment: bool = True
    num_workers: int = 0


@dataclass
class OptimConfig:
    """Adam and the learning-rate schedule (defaults: the paper's)."""

    lr: float = 2e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    # Per process: with torchrun the effective batch is batch_size × world size.
    batch_size: int = 2
    schedule: str = "constant"
    warmup_steps: int = 0
    # Cosine decays from lr to min_lr over the steps after the warm-up.
    min_lr: float = 0.0
    grad_clip: float | None = None


@dataclass
class LoopConfig:
    """Length of training, seeding, device, logging and checkpointing."""

    epochs: int = 30
    # None: one pass over the training slices per epoch.
    steps_per_epoch: int | None = None
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    log_every: int = 10
    # Training state (for --resume) is saved every this many steps and at every epoch end.
    save_state_every: int = 100
    # Epoch checkpoints kept besides last and best (None: all).
    keep_epoch_checkpoints: int | None = 3
    tensorboard: bool = True


@dataclass
class ValidateConfig:
    """What is measured after each epoch on the validation split (whole slices, the product's path)."""

    solver: str = "euler"
    steps: int = 1
    organs: list[str] = field(default_factory=lambda: list(DEFAULT_ORGANS))
    max_patients: int = 4
    slices_per_patient: int = 4
    # "auto": organ_mae_hu when the cache has labels, else mae_hu (both lower is better).
    best_metric: str = "auto"
    every_epochs: int = 1


@dataclass
class FlowConfig:
    """How Flow Matching draws its times (default: the paper's t ~ U[0, 1])."""

    # Fraction of samples drawn at an end point instead of U[0, 1]: t = 0 or t = 1, half each. One
    # Euler step only ever evaluates the field at t = 1 (contrast → native) or t = 0 (the other
    # way), so a short CPU budget spent there sharpens the 1-step translation while the uniform
    # rest keeps multi-step solvers meaningful.
    endpoint_fraction: float = 0.0


@dataclass
class DDPMConfig:
    """The conditional DDPM baseline's linear β schedule."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass
class TrainConfig:
    """Everything ``python -m training fit`` needs; stored whole in checkpoints and training state."""

    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    name: str = "run"
    kind: str = "flow"
    # Regression and DDPM learn one direction; flow learns both (direction must be None).
    direction: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    out: str = ""
    # Free text for the checkpoint sidecar; None: described from the cache.
    trained_on: str | None = None
    notes: str = ""
    # Extra keys copied into every checkpoint sidecar's "extra" (e.g. intended use).
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="", metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the form stored in checkpoints), without the internal ``source``."""
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d

    @property
    def out_dir(self) -> Path:
        """The run folder (checkpoints, state, logs)."""
        return Path(self.out)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, allows None) of ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), type(None) in typing.get_args(tp)
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    inner, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be null")
    if dataclasses.is_dataclass(inner):
        return _build(inner, value, where)
    origin = typing.get_origin(inner) or inner
    if inner is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if inner is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(inner) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object, got {value!r}")
        return copy.deepcopy(value)
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be an object, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _set_dotted(doc: dict[str, Any], dotted: str, where: str) -> None:
    if "=" not in dotted:
        raise ConfigError(f"{where}: an override must look like section.key=value, got {dotted!r}")
    key, raw = dotted.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare text, e.g. out=runs/x
    parts = key.strip().split(".")
    node = doc
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: cannot set {key!r}: {p!r} is not a section")
    node[parts[-1]] = value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw dict of a .json or .toml config file (clear errors for missing or malformed files)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        if p.suffix.lower() == ".toml":
            with open(p, "rb") as f:
                return tomllib.load(f)
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{p}: not a valid {'TOML' if p.suffix == '.toml' else 'JSON'} config: {exc}"
        ) from exc


def config_from_dict(doc: dict[str, Any], *, source: str = "<config>") -> TrainConfig:
    """Validate a config dict (unknown keys, model, solver, kind, paths) into a TrainConfig."""
    cfg = _build(TrainConfig, doc, source)
    cfg.source = source
    validate_config(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override (``section.key=value``) and validate a config file."""
    doc = read_config_file(path)
    for item in overrides or []:
        _set_dotted(doc, item, str(path))
    return config_from_dict(doc, source=str(path))


def validate_config(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the config file and the bad value."""
    where = cfg.source or "<config>"
    if cfg.kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {cfg.kind!r}")
    if cfg.kind == "flow":
        if cfg.direction is not None:
            raise ConfigError(f"{where}: a flow model learns both directions; drop 'direction'")
    else:
        if cfg.direction is None:
            cfg.direction = "c2n"
        if cfg.direction not in DIRECTIONS:
            raise ConfigError(f"{where}: direction must be c2n or n2c, got {cfg.direction!r}")
    if not cfg.model:
        raise ConfigError(f'{where}: \'model\' is required, e.g. {{"name": "timeresnet", "preset": "demo"}}')
    model = dict(cfg.model)
    if cfg.kind == "ddpm":
        # The DDPM denoiser sees the other phase's image as one conditioning channel.
        if model.get("cond_channels", 1) != 1:
            raise ConfigError(f"{where}: a ddpm model needs model.cond_channels = 1")
        model["cond_channels"] = 1
    elif model.get("cond_channels", 0) not in (0, None):
        raise ConfigError(f"{where}: model.cond_channels is only for kind 'ddpm'")
    try:
        resolve_model_config(model)
    except ModelConfigError as exc:
        raise ConfigError(f"{where}: model: {exc}") from exc
    cfg.model = model
    if not cfg.data.cache:
        raise ConfigError(f"{where}: data.cache (the slice cache folder) is required")
    for key in ("train_split", "val_split"):
        if getattr(cfg.data, key) not in SPLITS:
            raise ConfigError(f"{where}: data.{key} must be one of {', '.join(SPLITS)}")
    if cfg.data.crop is not None and cfg.data.crop < 8:
        raise ConfigError(f"{where}: data.crop must be at least 8 pixels (or null), got {cfg.data.crop}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"{where}: data.num_workers must be ≥ 0")
    if cfg.data.phantom is not None:
        _validate_phantom(cfg.data.phantom, f"{where}: data.phantom")
    o = cfg.optim
    if not (o.lr > 0 and o.batch_size >= 1 and len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas)):
        raise ConfigError(f"{where}: optim needs lr > 0, batch_size ≥ 1 and two betas in [0, 1)")
    if o.schedule not in SCHEDULES:
        raise ConfigError(
            f"{where}: optim.schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}"
        )
    if o.warmup_steps < 0 or o.min_lr < 0 or o.weight_decay < 0:
        raise ConfigError(f"{where}: optim.warmup_steps, min_lr and weight_decay must be ≥ 0")
    t = cfg.train
    if t.epochs < 1 or (t.steps_per_epoch is not None and t.steps_per_epoch < 1):
        raise ConfigError(f"{where}: train.epochs and train.steps_per_epoch must be ≥ 1")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"{where}: train.precision must be one of {', '.join(PRECISIONS)}")
    if t.log_every < 1 or t.save_state_every < 1:
        raise ConfigError(f"{where}: train.log_every and train.save_state_every must be ≥ 1")
    v = cfg.validate
    if cfg.kind == "flow":
        from mfm_engine.solvers import get_solver

        try:
            get_solver(v.solver)
        except MFMError as exc:
            raise ConfigError(f"{where}: validate.solver: {exc}") from exc
    if v.steps < 1 or v.max_patients < 0 or v.slices_per_patient < 1 or v.every_epochs < 1:
        raise ConfigError(f"{where}: validate.steps, slices_per_patient and every_epochs must be ≥ 1")
    if v.best_metric not in ("auto", "organ_mae_hu", "mae_hu", "val_loss"):
        raise ConfigError(f"{where}: validate.best_metric must be auto, organ_mae_hu, mae_hu or val_loss")
    if not 0.0 <= cfg.flow.endpoint_fraction <= 1.0:
        raise ConfigError(
            f"{where}: flow.endpoint_fraction must be in [0, 1], got {cfg.flow.endpoint_fraction}"
        )
    d = cfg.ddpm
    if not (d.num_timesteps >= 1 and 0 < d.beta_start <= d.beta_end < 1):
        raise ConfigError(f"{where}: ddpm needs num_timesteps ≥ 1 and 0 < beta_start ≤ beta_end < 1")
    if not cfg.out:
        cfg.out = str(Path("runs") / cfg.name)


def _validate_phantom(p: PhantomSpec, where: str) -> None:
    from training.registration import TRANSFORMS

    if p.patients < 3 and p.splits is None:
        raise ConfigError(f"{where}.patients must be ≥ 3 (one per split) unless splits are given")
    if p.slices < 1 or p.size < 32 or p.motion_mm < 0 or p.seed0 < 0:
        raise ConfigError(f"{where}: slices ≥ 1, size ≥ 32, motion_mm ≥ 0 and seed0 ≥ 0 are required")
    if p.splits is not None and (len(p.splits) != 3 or sum(p.splits) != p.patients or min(p.splits) < 0):
        raise ConfigError(f"{where}.splits must be three counts (train, test, holdout) adding up to patients")
    if p.registration not in TRANSFORMS:
        raise ConfigError(f"{where}.registration must be one of {', '.join(TRANSFORMS)}")
    if p.acquisition not in ("varied", "classic"):
        raise ConfigError(f"{where}.acquisition must be 'varied' or 'classic', got {p.acquisition!r}")
    if p.identity_share is not None and not 0 <= p.identity_share <= 1:
        raise ConfigError(f"{where}.identity_share must lie in [0, 1], got {p.identity_share!r}")
