"""``export``: copy a trained checkpoint under a new name, with its acceptance numbers in the sidecar.

A sidecar names its weights file, so a checkpoint cannot simply be renamed; this loads it (never
unpickling), and saves it again through the engine's writer with the same description plus the
metrics of a ``demo-report`` (or any JSON object of numbers) merged in.
"""

from __future__ import annotations

import json
from pathlib import Path

from mfm_engine.checkpoint import load_checkpoint, save_checkpoint
from training.errors import ConfigError


def export_checkpoint(source: str | Path, target: str | Path, *, report: str | Path | None = None) -> Path:
    """Write ``target`` (.safetensors + .json) with the weights and description of ``source``."""
    loaded = load_checkpoint(source, device="cpu")
    meta = loaded.meta
    metrics = dict(meta.metrics)
    extra = dict(meta.extra)
    if report is not None:
        try:
            doc = json.loads(Path(report).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{report}: cannot read the report JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{report}: the report must be a JSON object")
        extra["acceptance_report"] = doc
    extra["exported_from"] = str(source)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(
        loaded.model,
        target,
        model_config=meta.model,
        kind=meta.kind,
        hu_range=meta.hu_range,
        trained_on=meta.trained_on,
        metrics=metrics,
        extra=extra,
        ddpm_schedule=meta.ddpm,
        direction=meta.direction,
        passthrough=meta.passthrough,
        pixel_spacing_mm=meta.pixel_spacing_mm,
    )
