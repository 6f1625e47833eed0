"""Training state for exact resume: tensors in safetensors, everything else in JSON. Never pickle.

``RUN/state/`` holds ``step_<N>.safetensors`` (model weights and buffers under ``model/…``, Adam
moments under ``optim/<param>/<name>``) and ``step_<N>.json`` (step, epoch, optimizer param
groups and scalar state, grad-scaler state, best metric, the model config, the config, and the
SHA-256 of the tensors file). ``latest.json`` names the newest pair and is replaced last, so a
kill at any moment leaves a complete, consistent state to resume from; older pairs are removed
after it is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from training.cache import atomic_write_json
from training.errors import ResumeError

STATE_FORMAT = "mfm-train-state"
STATE_VERSION = 1
LATEST = "latest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(t: torch.Tensor) -> torch.Tensor:
    # safetensors refuses shared or non-contiguous storage: give every tensor its own copy.
    return t.detach().to("cpu").contiguous().clone()


def save_train_state(
    folder: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    meta: dict[str, Any],
    scaler_state: dict[str, Any] | None = None,
) -> Path:
    """Write the state of ``step`` into ``folder`` (atomic, see module doc); returns the JSON path."""
    from safetensors.torch import save_file

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"model/{k}": _plain(v) for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalar_state: dict[str, dict[str, Any]] = {}
    for idx, values in opt["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = _plain(value)
            else:
                scalar_state.setdefault(str(idx), {})[name] = value
    stem = f"step_{step:09d}"
    weights = root / f"{stem}.safetensors"
    tmp = root / f".{stem}.safetensors.{os.getpid()}.tmp"
    try:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "step": int(step),
        "tensors": weights.name,
        "tensors_sha256": _sha256(weights),
        "param_groups": opt["param_groups"],
        "optimizer_scalar_state": scalar_state,
        "scaler": scaler_state,
        **meta,
    }
    atomic_write_json(root / f"{stem}.json", doc)
    atomic_write_json(root / LATEST, {"format": STATE_FORMAT, "state": f"{stem}.json", "step": int(step)})
    # Only now is the previous state superseded.
    for old in root.glob("step_*"):
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)
    return root / f"{stem}.json"


def find_state(path: str | os.PathLike[str]) -> Path:
    """The state JSON for a run folder, a state folder, a latest.json or a step_N.json."""
    p = Path(path)
    if p.is_dir():
        p = p / "state" / LATEST if (p / "state" / LATEST).exists() else p / LATEST
    if not p.exists():
        raise ResumeError(
            f"{path}: no training state to resume (expected state/{LATEST} from an earlier fit)"
        )
    if p.name == LATEST:
        doc = _read(p)
        if doc.get("format") != STATE_FORMAT:
            raise ResumeError(f"{p}: not a training-state pointer")
        p = p.parent / str(doc.get("state"))
        if not p.exists():
            raise ResumeError(f"{p}: the training state named by {LATEST} is missing")
    return p


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResumeError(f"{path}: unreadable training state ({exc})") from exc
    if not isinstance(doc, dict):
        raise ResumeError(f"{path}: a training state must be a JSON object")
    return doc


def read_state_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated JSON part of a training state (no tensors are read)."""
    p = find_state(path)
    doc = _read(p)
    if doc.get("format") != STATE_FORMAT:
        raise ResumeError(f"{p}: not an MFM training state (format {doc.get('format')!r})")
    if int(doc.get("version", 0)) > STATE_VERSION:
        raise ResumeError(f"{p}: training state version {doc.get('version')} is newer than this code")
    doc["_path"] = str(p)
    return doc


def load_train_state(
    path: str | os.PathLike[str], *, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Fill ``model`` and ``optimizer`` from a state (SHA-256 checked); returns its JSON part."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    doc = read_state_meta(path)
    p = Path(doc["_path"])
    weights = p.parent / str(doc.get("tensors"))
    if not weights.is_file():
        raise ResumeError(f"{p}: its tensors file {weights.name} is missing")
    if _sha256(weights) != doc.get("tensors_sha256"):
        raise ResumeError(f"{weights}: does not match {p.name} (SHA-256 differs); the state is corrupt")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ResumeError(f"{weights}: unreadable tensors ({exc})") from exc
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ResumeError(f"{weights}: the saved weights do not fit this model ({first})") from exc
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in (doc.get("optimizer_scalar_state") or {}).items():
        state.setdefault(int(idx), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": doc["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ResumeError(f"{p}: the optimizer state does not fit this model ({exc})") from exc
    return doc
