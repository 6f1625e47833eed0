"""Checkpoints: weights in safetensors plus a JSON sidecar that says what they are. Never pickle.

``model.safetensors`` holds the tensors; ``model.json`` beside it holds everything needed to
rebuild and trust them: the full model config (name and every value), the kind
(``flow`` | ``regression`` | ``ddpm``), the HU range, what the model was trained on, its
evaluation metrics, the parameter count, versions, a creation time and the weights' SHA-256.
Loading reads only these two formats (safetensors is a JSON header plus raw tensor bytes), so a
checkpoint cannot run code; a pickle given by mistake is recognised and refused by name.

Sidecar keys (format version 1)::

    format            "mfm-checkpoint"
    format_version    1
    engine_version    mfm_engine.__version__ that wrote it
    weights           file name of the .safetensors beside the sidecar
    weights_sha256    hex digest of that file
    model             resolved model config: {"name": ..., ["preset": ...,] every value}
    kind              "flow" | "regression" | "ddpm"
    hu_range          [low, high] HU clip range of the model scale [-1, 1]
    trained_on        free text: data set, phantom, …
    metrics           dict (e.g. {"mae_hu": 6.5, "ssim": 0.99}); {} when not evaluated
    parameter_count   int
    created           ISO 8601 UTC time
    torch_version, monai_version
    ddpm              (kind ddpm) schedule: {"num_timesteps", "beta_start", "beta_end", ...}
    direction         (kinds regression, ddpm) "c2n" | "n2c"
    passthrough       optional: {"rule": "outside_hu_range", "blend_hu": 50} — input voxels outside
                      hu_range keep their value (see mfm_engine.fidelity); {"rule": "none"} turns it
                      off for a model trained on every HU. Absent (older sidecars): the default rule.
    pixel_spacing_mm  optional: [low, high] in-plane pixel spacing (mm) of the training slices; the
                      Translator resamples other spacings into it. Absent: unknown, no resampling.
    extra             dict, free
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfm_engine import __version__ as ENGINE_VERSION
from mfm_engine.errors import CheckpointError
from mfm_engine.fidelity import (
    DEFAULT_BLEND_HU,
    PASSTHROUGH_RULE,
    check_spacing_range,
    passthrough_from_sidecar,
)
from mfm_engine.models import ModelConfigError, build_model, count_parameters, resolve_model_config

FORMAT_NAME = "mfm-checkpoint"
FORMAT_VERSION = 1
KINDS = ("flow", "regression", "ddpm")
DIRECTIONS = ("c2n", "n2c")
ONE_WAY_KINDS = ("regression", "ddpm")
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
# How many offending keys an error message lists before "…".
_LIST_AT_MOST = 5
# safetensors headers are small JSON; anything claiming more than this is not one.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint's sidecar says, validated."""

    weights_path: Path
    sidecar_path: Path
    model: dict[str, Any]
    kind: str
    hu_range: tuple[float, float]
    trained_on: str
    metrics: dict[str, Any]
    format_version: int
    engine_version: str
    parameter_count: int
    created: str
    weights_sha256: str | None = None
    ddpm: dict[str, Any] | None = None
    direction: str | None = None
    passthrough: dict[str, Any] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_name(self) -> str:
        """The registry name of the network (e.g. ``timeresnet``)."""
        return str(self.model["name"])

    @property
    def label(self) -> str:
        """Short human label: ``<file stem> (<model>[/<preset>], <kind>)``."""
        preset = self.model.get("preset")
        name = f"{self.model_name}/{preset}" if preset else self.model_name
        return f"{self.weights_path.stem} ({name}, {self.kind})"


@dataclass
class LoadedCheckpoint:
    """A model in eval mode with its metadata."""

    model: nn.Module
    meta: CheckpointMeta


# -- saving -------------------------------------------------------------------------------------


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_config: Mapping[str, Any],
    kind: str,
    hu_range: tuple[float, float] = (-1000.0, 1000.0),
    trained_on: str,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    ddpm_schedule: Mapping[str, Any] | None = None,
    direction: str | None = None,
    passthrough: Mapping[str, Any] | None = None,
    pixel_spacing_mm: float | tuple[float, float] | None = None,
) -> Path:
    """Write ``path`` (.safetensors, suffix added if missing) and ``<stem>.json`` atomically.

    Returns the weights path.

    ``ddpm_schedule`` is required for kind ``ddpm`` (at least ``num_timesteps``, ``beta_start``,
    ``beta_end``); ``direction`` (``c2n`` | ``n2c``) for kinds ``regression`` and ``ddpm``.
    ``passthrough`` defaults to the outside-the-HU-range rule; ``pixel_spacing_mm`` is the training
    slices' in-plane spacing (one value or a [low, high] range), recorded when known.
    """
    from safetensors.torch import save_file

    weights = Path(path)
    if weights.suffix != WEIGHTS_SUFFIX:
        weights = weights.with_name(weights.name + WEIGHTS_SUFFIX)
    sidecar = weights.with_suffix(SIDECAR_SUFFIX)

    try:
        resolved = resolve_model_config(model_config)
    except ModelConfigError as exc:
        raise CheckpointError(f"cannot save {weights}: {exc}") from exc
    if kind not in KINDS:
        raise CheckpointError(f"cannot save {weights}: kind must be one of {KINDS}, got {kind!r}")
    hu = _check_hu_range(hu_range, f"cannot save {weights}")
    info: dict[str, Any] = {}
    if kind == "ddpm":
        info["ddpm"] = _check_ddpm_schedule(ddpm_schedule, f"cannot save {weights}")
    elif ddpm_schedule is not None:
        raise CheckpointError(f"cannot save {weights}: ddpm_schedule given for a {kind!r} checkpoint")
    # Regression and conditional-DDPM networks each learn one direction; a flow field serves both.
    if kind in ONE_WAY_KINDS:
        if direction not in DIRECTIONS:
            raise CheckpointError(
                f"cannot save {weights}: a {kind} checkpoint needs direction in {DIRECTIONS}, "
                f"got {direction!r}"
            )
        info["direction"] = direction
    elif direction is not None:
        raise CheckpointError(
            f"cannot save {weights}: direction applies to regression and ddpm checkpoints only"
        )

    rule = (
        dict(passthrough)
        if passthrough is not None
        else {"rule": PASSTHROUGH_RULE, "blend_hu": DEFAULT_BLEND_HU}
    )
    try:
        passthrough_from_sidecar(rule, hu)
        info["passthrough"] = rule
        if pixel_spacing_mm is not None:
            info["pixel_spacing_mm"] = list(check_spacing_range(pixel_spacing_mm))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save {weights}: {exc}") from exc

    state = _plain_state_dict(model)
    # Refuse to write a checkpoint that could not be loaded back: the config must rebuild
    # exactly these tensors.
    _check_state_matches(_expected_shapes(resolved, weights), state, weights, "model_config")

    sidecar_doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "engine_version": ENGINE_VERSION,
        "weights": weights.name,
        "weights_sha256": None,  # filled in below, once the bytes exist
        "model": resolved,
        "kind": kind,
        "hu_range": list(hu),
        "trained_on": str(trained_on),
        "metrics": dict(metrics or {}),
        "parameter_count": count_parameters(model),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "monai_version": _package_version("monai"),
        **info,
        "extra": dict(extra or {}),
    }
    try:
        json.dumps(sidecar_doc)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save {weights}: metadata is not JSON-serialisable ({exc})") from exc

    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp_weights = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    tmp_sidecar = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    try:
        header = {"format": "pt", FORMAT_NAME: str(FORMAT_VERSION), "model_name": resolved["name"]}
        save_file(state, str(tmp_weights), metadata=header)
        sidecar_doc["weights_sha256"] = _sha256(tmp_weights)
        with open(tmp_sidecar, "w", encoding="utf-8") as f:
            json.dump(sidecar_doc, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_weights, weights)
        os.replace(tmp_sidecar, sidecar)
    finally:
        for tmp in (tmp_weights, tmp_sidecar):
            tmp.unlink(missing_ok=True)
    return weights


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing memory (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu")
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else 0
        if (ptr and ptr in seen) or not tensor.is_contiguous():
            # Tied weights are written twice; loading fills the one shared Parameter twice.
            tensor = tensor.contiguous().clone()
        elif ptr:
            seen.add(ptr)
        out[key] = tensor
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- reading ------------------------------------------------------------------------------------


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, sidecar) for a path to either; refuses other files, pickles by name."""
    p = Path(path)
    if p.suffix == SIDECAR_SUFFIX:
        return p.with_suffix(WEIGHTS_SUFFIX), p
    if p.suffix == WEIGHTS_SUFFIX:
        return p, p.with_suffix(SIDECAR_SUFFIX)
    if p.is_file():
        kind = _sniff(p)
        if kind in ("pickle", "zip"):
            raise CheckpointError(
                f"{p} is a PyTorch pickle ({'torch.save zip archive' if kind == 'zip' else 'raw pickle'}); "
                "MFM Studio never unpickles files, because unpickling can run arbitrary code. "
                "Load it in a trusted Python session and save it with "
                "mfm_engine.checkpoint.save_checkpoint (safetensors + JSON sidecar)."
            )
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    raise CheckpointError(
        f"{p} is not a checkpoint: expected a {WEIGHTS_SUFFIX} weights file or its {SIDECAR_SUFFIX} sidecar"
    )


def _sniff(path: Path) -> str:
    """'pickle', 'zip', 'safetensors' or 'unknown', from the first bytes (nothing is executed)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"  # torch.save's default format: a zip of pickles
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # PROTO opcode + protocol number
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def _read_safetensors_header(weights: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, validated without reading tensor data."""
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} do not exist")
    kind = _sniff(weights)
    if kind in ("pickle", "zip"):
        raise CheckpointError(
            f"{weights} is a PyTorch pickle ({'torch.save zip archive' if kind == 'zip' else 'raw pickle'}) "
            f"with a {WEIGHTS_SUFFIX} name, not a safetensors file; MFM Studio never unpickles files. "
            "Convert it in a trusted Python session with mfm_engine.checkpoint.save_checkpoint."
        )
    size = weights.stat().st_size
    with open(weights, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{weights} is not a safetensors file: only {size} bytes long")
        (n,) = struct.unpack("<Q", prefix)
        if n < 2 or n > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{weights} is not a safetensors file: its first 8 bytes announce a {n}-byte header "
                f"in a {size}-byte file"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{weights} is not a safetensors file: its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{weights} is not a safetensors file: its header is not a JSON object")
    return header


def read_checkpoint_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read and validate a checkpoint's sidecar (and its weights' header) without loading tensors."""
    weights, sidecar = _paths(path)
    if not weights.exists() and not sidecar.exists():
        raise CheckpointError(f"checkpoint {Path(path)} does not exist")
    if weights.exists():
        # First, so that a pickle or a random file is named as such even without a sidecar.
        _read_safetensors_header(weights)
    if not sidecar.is_file():
        raise CheckpointError(
            f"checkpoint {weights} has no sidecar: expected {sidecar} beside it (the JSON that names "
            "the model and its config); without it the weights cannot be interpreted"
        )
    try:
        doc = json.loads(sidecar.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"checkpoint sidecar {sidecar} is not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"checkpoint sidecar {sidecar} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno}, column {exc.colno}"
        ) from exc
    if not isinstance(doc, dict):
        raise CheckpointError(
            f"checkpoint sidecar {sidecar} must hold a JSON object, got {type(doc).__name__}"
        )
    where = f"checkpoint sidecar {sidecar}"
    if doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where} is not an MFM checkpoint sidecar (format {doc.get('format')!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has unsupported format version {version!r}; this engine "
            f"({ENGINE_VERSION}) reads versions 1..{FORMAT_VERSION}"
        )
    if doc.get("weights") not in (None, weights.name):
        # The sidecar names its weights file; a sidecar copied beside other weights is caught here.
        raise CheckpointError(f"{where} describes weights {doc.get('weights')!r}, not {weights.name!r}")
    model_cfg = doc.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise CheckpointError(f"{where} has no model config (a 'model' object with a 'name')")
    try:
        model_cfg = resolve_model_config(model_cfg)
    except ModelConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    kind = doc.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    hu = _check_hu_range(doc.get("hu_range"), where)
    ddpm = _check_ddpm_schedule(doc.get("ddpm"), where) if kind == "ddpm" else None
    direction = doc.get("direction")
    if kind in ONE_WAY_KINDS and direction not in DIRECTIONS:
        raise CheckpointError(
            f"{where}: a {kind} checkpoint needs direction in {DIRECTIONS}, got {direction!r}"
        )
    metrics = doc.get("metrics") or {}
    extra = doc.get("extra") or {}
    if not isinstance(metrics, dict) or not isinstance(extra, dict):
        raise CheckpointError(f"{where}: 'metrics' and 'extra' must be JSON objects")
    if not weights.is_file():
        raise CheckpointError(f"{where} describes weights {weights}, which do not exist")
    try:
        passthrough_from_sidecar(doc.get("passthrough"), hu)
        spacing = doc.get("pixel_spacing_mm")
        spacing = check_spacing_range(spacing) if spacing is not None else None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    return CheckpointMeta(
        weights_path=weights,
        sidecar_path=sidecar,
        model=model_cfg,
        kind=kind,
        hu_range=hu,
        trained_on=str(doc.get("trained_on", "")),
        metrics=metrics,
        format_version=version,
        engine_version=str(doc.get("engine_version", "")),
        parameter_count=int(doc.get("parameter_count") or 0),
        created=str(doc.get("created", "")),
        weights_sha256=doc.get("weights_sha256"),
        ddpm=ddpm,
        direction=direction if kind in ONE_WAY_KINDS else None,
        passthrough=doc.get("passthrough"),
        pixel_spacing_mm=spacing,
        extra=extra,
        raw=doc,
    )


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", *, verify: bool = True
) -> LoadedCheckpoint:
    """Build the sidecar's model, fill it from the safetensors weights, move it to ``device``, eval mode.

    ``path`` is the .safetensors or the .json. ``verify`` checks the weights' SHA-256 against
    the sidecar. Nothing is unpickled.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    weights = meta.weights_path
    if verify and meta.weights_sha256 and _sha256(weights) != meta.weights_sha256:
        raise CheckpointError(
            f"{weights} does not match its sidecar {meta.sidecar_path}: the SHA-256 differs, so the "
            "weights were changed or the sidecar belongs to another file"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} could not be read as safetensors: {exc}") from exc
    try:
        model = build_model(meta.model)
    except ModelConfigError as exc:
        raise CheckpointError(f"checkpoint sidecar {meta.sidecar_path}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_state_matches(expected, state, weights, f"the model config in {meta.sidecar_path.name}")
    model.load_state_dict(state, strict=True)
    model.to(device)
    model.eval()
    return LoadedCheckpoint(model=model, meta=meta)


# -- checks -------------------------------------------------------------------------------------


def _expected_shapes(resolved: Mapping[str, Any], where: Path) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes the config builds, without allocating where the net allows it."""
    try:
        try:
            with torch.device("meta"):
                model = build_model(resolved)
        except (RuntimeError, NotImplementedError):
            model = build_model(resolved)  # some MONAI nets call .item() while building
    except ModelConfigError as exc:
        raise CheckpointError(f"cannot save {where}: {exc}") from exc
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_state_matches(
    expected: Mapping[str, tuple[int, ...]],
    state: Mapping[str, torch.Tensor],
    weights: Path,
    config_label: str,
) -> None:
    """Raise a CheckpointError listing missing, unexpected and mis-shaped tensors."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: weights {tuple(state[k].shape)} vs config {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:_LIST_AT_MOST]) + (", …" if len(items) > _LIST_AT_MOST else "")
            parts.append(f"{len(items)} {label} ({shown})")
    raise CheckpointError(f"the weights in {weights} do not match {config_label}: " + "; ".join(parts))


def _check_hu_range(value: Any, where: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: hu_range must be two numbers [low, high], got {value!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise CheckpointError(f"{where}: hu_range must be finite with low < high, got {value!r}")
    return low, high


def _check_ddpm_schedule(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CheckpointError(
            f"{where}: a ddpm checkpoint needs its schedule as an object with num_timesteps, "
            f"beta_start and beta_end, got {value!r}"
        )
    schedule = dict(value)
    try:
        steps = int(schedule["num_timesteps"])
        b0, b1 = float(schedule["beta_start"]), float(schedule["beta_end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: ddpm schedule needs num_timesteps, beta_start and beta_end, got {schedule!r}"
        ) from exc
    if steps < 1 or not 0.0 < b0 <= b1 < 1.0:
        raise CheckpointError(
            f"{where}: ddpm schedule needs num_timesteps ≥ 1 and 0 < beta_start ≤ beta_end < 1, "
            f"got {schedule!r}"
        )
    return schedule
