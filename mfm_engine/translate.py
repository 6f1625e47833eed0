"""The Translator: a checkpoint on a device turns contrast slices/volumes into synthetic natives, and back.

Flow checkpoints integrate the learned field dx/dt = f(x, t) with a chosen solver: contrast→native
(``c2n``) from t=1 to t=0, native→contrast (``n2c``) from 0 to 1. Regression checkpoints are one
forward pass; DDPM checkpoints run deterministic DDIM sampling conditioned on the input. Volumes
go through in batches of axial slices, so peak extra memory is bounded by the batch.

Around the network (``mfm_engine.fidelity``): input voxels outside the checkpoint's HU range pass
through unchanged, and slices whose pixel spacing is outside the training range are resampled to it
and only the model's change is resampled back. On a CPU, ``precision="auto"`` is the measured,
cached choice of ``mfm_engine.precision``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfm_engine import __version__
from mfm_engine.cancel import CancelFlag, is_cancelled
from mfm_engine.ddpm import DDPMSchedule, ddim_sample
from mfm_engine.device import available_memory_bytes, pick_device
from mfm_engine.errors import MFMError
from mfm_engine.fidelity import InPlaneOrientation, PassThrough, model_spacing, resample, resampled_shape
from mfm_engine.intensity import HU_MAX, HU_MIN, hu_to_model
from mfm_engine.solvers import get_solver
from mfm_engine.volume import Volume

DIRECTIONS = ("c2n", "n2c")
DIRECTION_LABELS = {"c2n": "contrast → native", "n2c": "native → contrast"}
_OUTPUT_PHASE = {"c2n": "native", "n2c": "arterial"}
_TIME_SPAN = {"c2n": (1.0, 0.0), "n2c": (0.0, 1.0)}
# Batches larger than this gain nothing on a CPU and only cost memory.
_MAX_CPU_BATCH = 4
_MAX_GPU_BATCH = 64
# Iodine only adds attenuation: contrast → native may raise a voxel (n2c lower one) by at most this.
# About twice the phantom's noise σ: measured neutral on held-out phantoms (docs/engine.md).
WRONG_WAY_CAP_HU = 20.0


class TranslationCancelled(MFMError):
    """The caller's cancel flag was set; nothing was returned or written."""


class TranslationError(MFMError):
    """A translation request that cannot be carried out (wrong direction, bad input…)."""


@dataclass
class SliceResult:
    """One translated slice (or batch) in HU with the cost of making it."""

    hu: np.ndarray
    nfe: int
    seconds: float


Progress = Callable[[int, int], None] | None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Translator:
    """A loaded model on a device, ready to translate in either direction it supports."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        kind: str = "flow",
        model_name: str = "model",
        checkpoint: str | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        trained_direction: str | None = None,
        ddpm_schedule: DDPMSchedule | None = None,
        noise_seed: int = 0,
        hu_range: tuple[float, float] = (HU_MIN, HU_MAX),
        passthrough: bool | PassThrough = True,
        training_spacing_mm: tuple[float, float] | None = None,
        resample: bool = True,
        max_wrong_way_hu: float | None = WRONG_WAY_CAP_HU,
    ) -> None:
        if kind not in ("flow", "regression", "ddpm"):
            raise TranslationError(f"unknown model kind {kind!r} (expected flow, regression or ddpm)")
        self.device = pick_device(device) if isinstance(device, str) else device
        self.kind = kind
        self.model_name = model_name
        self.checkpoint = checkpoint
        self.trained_direction = trained_direction
        self.ddpm_schedule = ddpm_schedule or DDPMSchedule()
        self.noise_seed = noise_seed
        self.hu_range = (float(hu_range[0]), float(hu_range[1]))
        # True: the default rule on the model's HU range; a PassThrough: that rule; False/None: off.
        if passthrough is True:
            passthrough = PassThrough(*self.hu_range)
        self.passthrough: PassThrough | None = passthrough or None
        self.training_spacing_mm = tuple(training_spacing_mm) if training_spacing_mm else None
        self.resample = bool(resample)
        self.max_wrong_way_hu = None if max_wrong_way_hu is None else float(max_wrong_way_hu)
        self.precision_choice = None  # the measured CPU choice, when precision="auto" made one
        self.precision = self._resolve_precision(precision, model)
        if channels_last is None:
            # bf16 on a CPU was measured with channels-last (oneDNN's fast path); the measured
            # choice says whether fp32 gains from it too.
            channels_last = (
                self.device.type == "cuda"
                or (self.device.type == "cpu" and self.precision == "bf16")
                or bool(self.precision_choice is not None and self.precision_choice.channels_last)
            )
        self.channels_last = channels_last
        model = model.to(self.device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._net = torch.compile(model) if compile else model

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **options: Any) -> Translator:
        """Load a checkpoint (safetensors + JSON sidecar; never unpickled) onto a device."""
        from mfm_engine.checkpoint import load_checkpoint
        from mfm_engine.fidelity import passthrough_from_sidecar

        target = pick_device(device)
        loaded = load_checkpoint(path, device=str(target))
        meta = loaded.meta
        schedule = DDPMSchedule(**meta.ddpm) if meta.ddpm else None
        if options.get("passthrough", True) is True:
            # The sidecar's rule (the default rule for sidecars older than pass-through).
            options["passthrough"] = passthrough_from_sidecar(meta.passthrough, meta.hu_range) or False
        options.setdefault("training_spacing_mm", meta.pixel_spacing_mm)
        options.setdefault("hu_range", meta.hu_range)
        return cls(
            loaded.model,
            kind=meta.kind,
            model_name=meta.label,
            checkpoint=str(path),
            device=target,
            trained_direction=meta.direction,
            ddpm_schedule=schedule,
            **options,
        )

    def _resolve_precision(self, precision: str, model: torch.nn.Module) -> str:
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise TranslationError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        if precision != "auto":
            if precision == "fp16" and self.device.type == "cpu":
                raise TranslationError("fp16 autocast is for GPUs; use bf16 or fp32 on a CPU")
            return precision
        if self.device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if self.device.type == "cpu":
            # Whether bf16 pays off on a CPU depends on the CPU and the network (AVX-512 BF16 without
            # AMX was faster for some nets and slower for others): measured once, then cached.
            from mfm_engine.precision import choose_cpu_precision

            self.precision_choice = choose_cpu_precision(model)
            return self.precision_choice.precision
        return "fp32"

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # -- what it can do -------------------------------------------------------------------------
    def supports(self, direction: str) -> bool:
        """Flow models go both ways; regression and DDPM models only the way they were trained."""
        if direction not in DIRECTIONS:
            return False
        return self.kind == "flow" or self.trained_direction in (None, direction)

    def _check_request(self, direction: str, solver: str, steps: int) -> None:
        if direction not in DIRECTIONS:
            raise TranslationError(f"direction must be 'c2n' or 'n2c', got {direction!r}")
        if not self.supports(direction):
            raise TranslationError(
                f"{self.model_name} is a {self.kind} model trained for {self.trained_direction} only; "
                f"it cannot translate {DIRECTION_LABELS[direction]}"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise TranslationError(f"steps must be a whole number >= 1, got {steps!r}")
        if self.kind == "flow":
            get_solver(solver)  # fails early, naming the known solvers

    # -- the core: a batch of model-scale slices ---------------------------------------------
    def _field(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            v = self._net(x, t.expand(x.shape[0]))
        return v.float()

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        # One noise field for every slice of a volume: slices stay consistent along z.
        gen = torch.Generator().manual_seed(self.noise_seed)
        field = torch.randn((1, 1, *shape[-2:]), generator=gen)
        return field.expand(shape).to(self.device)

    def _run_batch(
        self, x: torch.Tensor, direction: str, solver: str, steps: int
    ) -> tuple[torch.Tensor, int]:
        """x: (B, 1, H, W) in model scale on the device → (translated batch, NFE)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.kind == "flow":
            t0, t1 = _TIME_SPAN[direction]
            result = get_solver(solver).integrate(self._field, x, t0, t1, steps)
            return result.x, result.nfe
        if self.kind == "regression":
            with self._autocast():
                out = self._net(x, torch.zeros(x.shape[0], device=x.device))
            return out.float(), 1

        def denoiser(x_t, t, cond):
            with self._autocast():
                return self._net(x_t, t, cond).float()

        return ddim_sample(denoiser, x, self._noise(tuple(x.shape)), self.ddpm_schedule, steps)

    def model_shape(
        self, shape_hw: tuple[int, int], pixel_spacing_mm: tuple[float, float] | None
    ) -> tuple[int, int] | None:
        """The (H, W) a slice is resampled to before the network, or None when it goes as it is."""
        if not self.resample or self.training_spacing_mm is None or pixel_spacing_mm is None:
            return None
        target = model_spacing(tuple(pixel_spacing_mm), self.training_spacing_mm)
        size = resampled_shape(tuple(shape_hw), tuple(pixel_spacing_mm), target)
        return None if size == tuple(shape_hw) else size

    def _translate_hu(
        self,
        hu: np.ndarray,
        direction: str,
        solver: str,
        steps: int,
        spacing: tuple[float, float] | None,
        orientation: InPlaneOrientation | None = None,
    ) -> tuple[np.ndarray, int]:
        """(B, H, W) HU → (B, H, W) HU, NFE: orient, resample, integrate, change back, pass-through, cap."""
        if orientation is not None and not orientation.is_identity:
            turned = np.ascontiguousarray(orientation.to_model(np.asarray(hu, dtype=np.float32)))
            out, nfe = self._translate_hu(
                turned, direction, solver, steps, orientation.spacing_to_model(spacing)
            )
            return np.ascontiguousarray(orientation.from_model(out)), nfe
        hu = np.asarray(hu, dtype=np.float32)
        x = torch.from_numpy(hu_to_model(hu, self.hu_range)).unsqueeze(1).to(self.device)  # a new array
        size = self.model_shape(hu.shape[-2:], spacing)
        if size is None:
            y, nfe = self._run_batch(x, direction, solver, steps)
            delta = y.float() - x
        else:
            xr = resample(x, size)
            yr, nfe = self._run_batch(xr, direction, solver, steps)
            # Only the change goes back to the input grid: voxels the model leaves alone keep their
            # own detail instead of being interpolated twice.
            delta = resample(yr.float() - xr, tuple(hu.shape[-2:]))
        # The change in HU added to the (clipped) input: a zero change returns the input exactly.
        low, high = self.hu_range
        out = np.clip(hu, low, high) + delta[:, 0].cpu().numpy() * np.float32((high - low) / 2)
        if self.passthrough is not None:
            out = self.passthrough.apply(hu, out)
        if self.max_wrong_way_hu is not None:
            cap = self.max_wrong_way_hu
            out = np.minimum(out, hu + cap) if direction == "c2n" else np.maximum(out, hu - cap)
        return out, nfe

    @torch.inference_mode()
    def translate_array(
        self,
        hu: np.ndarray,
        *,
        direction: str = "c2n",
        solver: str = "euler",
        steps: int = 1,
        pixel_spacing_mm: tuple[float, float] | None = None,
        volume_direction: np.ndarray | None = None,
    ) -> SliceResult:
        """Translate a slice (H, W) or stack (B, H, W) in HU.

        ``pixel_spacing_mm`` (x, y) lets it resample to the training scale; ``volume_direction`` (the
        3×3 `Volume.direction`) lets it turn the slices to the training orientation, as
        `translate_volume` does.
        """
        self._check_request(direction, solver, steps)
        arr = np.asarray(hu)
        if arr.ndim not in (2, 3):
            raise TranslationError(f"expected a slice (H, W) or slices (B, H, W), got shape {arr.shape}")
        stack = arr[None] if arr.ndim == 2 else arr
        start = time.perf_counter()
        orientation = (
            None if volume_direction is None else InPlaneOrientation.from_direction(volume_direction)
        )
        result, nfe = self._translate_hu(stack, direction, solver, steps, pixel_spacing_mm, orientation)
        seconds = time.perf_counter() - start
        return SliceResult(hu=result[0] if arr.ndim == 2 else result, nfe=nfe, seconds=seconds)

    def translate_slice(
        self,
        hu2d: np.ndarray,
        *,
        direction: str = "c2n",
        solver: str = "euler",
        steps: int = 1,
        pixel_spacing_mm: tuple[float, float] | None = None,
        volume_direction: np.ndarray | None = None,
    ) -> SliceResult:
        """Translate one axial slice (H, W) in HU (pixel spacing (x, y) mm and direction when known)."""
        if np.asarray(hu2d).ndim != 2:
            raise TranslationError(f"translate_slice expects one (H, W) slice, got shape {np.shape(hu2d)}")
        return self.translate_array(
            hu2d,
            direction=direction,
            solver=solver,
            steps=steps,
            pixel_spacing_mm=pixel_spacing_mm,
            volume_direction=volume_direction,
        )

    # -- volumes ----------------------------------------------------------------------------
    def auto_batch_size(self, height: int, width: int) -> int:
        """Slices per batch from free memory: a rough activation estimate, capped per device type."""
        # Activations of a conv encoder–decoder scale with pixels × width; ~64 fp32 maps of the
        # base width per pixel is a generous estimate for the configs we ship, plus solver state.
        base = int(getattr(self.model, "mfm_config", {}).get("base_channels", 64) or 64)
        per_slice = height * width * 4 * (64 * base + 16)
        budget = available_memory_bytes(self.device) // 4
        cap = _MAX_GPU_BATCH if self.device.type == "cuda" else _MAX_CPU_BATCH
        return int(max(1, min(cap, budget // max(per_slice, 1))))

    @torch.inference_mode()
    def translate_volume(
        self,
        volume: Volume,
        *,
        direction: str = "c2n",
        solver: str = "euler",
        steps: int = 1,
        batch_size: int | None = None,
        progress: Progress = None,
        cancel: CancelFlag = None,
    ) -> Volume:
        """Translate every axial slice; returns a new synthetic Volume (the input is never changed)."""
        self._check_request(direction, solver, steps)
        n, h, w = volume.shape
        spacing = (volume.spacing[0], volume.spacing[1])
        orientation = InPlaneOrientation.from_direction(volume.direction)
        model_hw = (w, h) if orientation.transpose else (h, w)
        size = self.model_shape(model_hw, orientation.spacing_to_model(spacing))
        batch = batch_size or self.auto_batch_size(*(size or model_hw))
        out = np.empty((n, h, w), dtype=np.float32)
        nfe_total = 0
        start = time.perf_counter()
        done = 0
        if progress:
            progress(0, n)
        while done < n:
            if is_cancelled(cancel):
                raise TranslationCancelled(f"translation cancelled after {done} of {n} slices")
            stop = min(n, done + batch)
            try:
                y, nfe = self._translate_hu(
                    volume.hu[done:stop], direction, solver, steps, spacing, orientation
                )
            except RuntimeError as exc:
                if not _is_oom(exc) or batch == 1:
                    raise
                batch = max(1, batch // 2)  # out of memory: halve and retry the same slices
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            out[done:stop] = y
            nfe_total = max(nfe_total, nfe)
            done = stop
            if progress:
                progress(done, n)
        seconds = time.perf_counter() - start
        prov = self.provenance(direction, solver, steps, nfe_total, seconds, pixel_spacing_mm=spacing)
        prov["in_plane_orientation"] = orientation.record()
        return self._synthetic_volume(volume, out, prov)

    def resampling_record(self, pixel_spacing_mm: tuple[float, float] | None) -> dict[str, Any]:
        """How slices of this spacing reach the network: recorded in provenance."""
        rec: dict[str, Any] = {
            "enabled": self.resample,
            "training_spacing_mm": list(self.training_spacing_mm) if self.training_spacing_mm else None,
            "input_spacing_mm": [float(s) for s in pixel_spacing_mm] if pixel_spacing_mm else None,
        }
        if self.resample and self.training_spacing_mm and pixel_spacing_mm:
            target = model_spacing(tuple(pixel_spacing_mm), self.training_spacing_mm)
            rec["model_spacing_mm"] = [round(float(t), 4) for t in target]
            rec["resampled"] = [float(t) for t in target] != [float(s) for s in pixel_spacing_mm]
        else:
            rec["resampled"] = False
        return rec

    def provenance(
        self,
        direction: str,
        solver: str,
        steps: int,
        nfe: int,
        seconds: float,
        pixel_spacing_mm: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """What made a synthetic image: recorded in Volume.meta and in every exported file."""
        return {
            "model": self.model_name,
            "checkpoint": self.checkpoint,
            "kind": self.kind,
            "direction": direction,
            "solver": solver if self.kind == "flow" else ("ddim" if self.kind == "ddpm" else "single pass"),
            "steps": steps if self.kind != "regression" else 1,
            "nfe": nfe,
            "seconds": round(seconds, 3),
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "hu_range": list(self.hu_range),
            "passthrough": self.passthrough.describe() if self.passthrough else {"rule": "off"},
            "resampling": self.resampling_record(pixel_spacing_mm),
            "max_wrong_way_hu": self.max_wrong_way_hu,
            "engine_version": __version__,
        }

    def _synthetic_volume(self, source: Volume, hu: np.ndarray, prov: dict[str, Any]) -> Volume:
        direction = prov["direction"]
        phase = _OUTPUT_PHASE[direction]
        label = f"{prov['solver']}×{prov['steps']}" if self.kind != "regression" else "single pass"
        return source.with_hu(
            hu,
            synthetic=True,
            provenance=prov,
            phase=phase,
            series_description=f"SYNTHETIC {phase} ({self.model_name}, {label})",
            warnings=[],
        )


def seconds_per_slice(volume: Volume) -> float:
    """Wall time per slice of a translated volume, from its provenance (nan when unknown)."""
    prov = volume.meta.get("provenance", {})
    return prov.get("seconds", math.nan) / max(volume.shape[0], 1)
