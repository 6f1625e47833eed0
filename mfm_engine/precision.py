"""CPU precision chosen by measurement: bf16 (autocast + channels-last) only where it is faster and accurate.

Whether bf16 pays off on a CPU depends on the CPU (AMX tiles, AVX-512 BF16 or neither), the torch
build and the network, so ``precision="auto"`` measures it once per (CPU model and flags, torch
version, threads, model config) on a few phantom slices and caches the answer in a small JSON file.
Candidates: fp32 (contiguous), fp32 channels-last, bf16 autocast channels-last, timed in turn
(round robin, so load drifting on a shared CPU hits all alike), min of the repeats. A candidate is
*accurate* when one contrast → native Euler step differs from fp32's by a mean |ΔHU| ≤ 1 and a
99.9th percentile ≤ 5 HU; the fastest accurate candidate wins, but only when it is at least
``MIN_GAIN`` faster than fp32 (timings on a shared CPU jitter by a few per cent).

Cache: ``$MFM_STUDIO_CACHE_DIR`` or ``$XDG_CACHE_HOME/mfm-studio`` or ``~/.cache/mfm-studio``,
file ``cpu_precision.json``. ``MFM_CPU_PRECISION=fp32|bf16`` skips the measurement (the test suite
sets fp32, so its numbers do not depend on the machine).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfm_engine.atomic import atomic_write_text
from mfm_engine.device import cpu_flags

CACHE_FILE = "cpu_precision.json"
MAX_MEAN_ABS_HU = 1.0
MAX_P999_HU = 5.0
# A candidate must beat fp32 by this fraction before it replaces it.
MIN_GAIN = 0.10
CANDIDATES: tuple[tuple[str, bool], ...] = (("fp32", False), ("fp32", True), ("bf16", True))
ENV_OVERRIDE = "MFM_CPU_PRECISION"


@dataclass
class PrecisionChoice:
    """The precision (and memory layout) a CPU runs a model in, and the measurement behind it."""

    precision: str
    channels_last: bool
    source: str  # "measured", "cache" or "environment"
    key: str = ""
    measurements: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    def summary(self) -> str:
        """One line for a command line or a status bar."""
        layout = " channels-last" if self.channels_last else ""
        return f"{self.precision}{layout} ({self.source}: {self.reason})"


def cache_dir() -> Path:
    """Where the measured choices are kept (MFM_STUDIO_CACHE_DIR, else the XDG user cache)."""
    if os.environ.get("MFM_STUDIO_CACHE_DIR"):
        return Path(os.environ["MFM_STUDIO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mfm-studio"


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's config (or, without one, of its class and parameter shapes)."""
    config = getattr(model, "mfm_config", None)
    if config:
        text = json.dumps(config, sort_keys=True, default=str)
    else:
        shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        text = json.dumps([type(model).__name__, shapes])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_key(model: torch.nn.Module, size: int) -> str:
    """Cache key: CPU model + flags, torch version, threads, slice size, model config."""
    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:12]
    parts = [
        cpu_model_name(),
        f"flags:{flags}",
        f"torch:{torch.__version__}",
        f"threads:{torch.get_num_threads()}",
        f"size:{size}",
        f"model:{model_fingerprint(model)}",
    ]
    return "|".join(parts)


def measure(model: torch.nn.Module, hu: np.ndarray, *, repeats: int = 3) -> list[dict[str, Any]]:
    """Per candidate: ms per slice on (B, H, W) HU (min of ``repeats``, after a warm-up), HU error vs fp32."""
    from mfm_engine.intensity import hu_to_model, model_to_hu

    model = model.to("cpu").eval()
    # Channels-last converts weights in place: a copy keeps the caller's model as it was.
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.from_numpy(hu_to_model(np.asarray(hu, dtype=np.float32))).unsqueeze(1)
    t = torch.ones(x.shape[0])
    inputs = {False: x.contiguous(), True: x.contiguous(memory_format=torch.channels_last)}

    def once(precision: str, channels_last: bool) -> torch.Tensor:
        net = last if channels_last else model
        cast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        )
        with torch.inference_mode(), cast:
            return net(inputs[channels_last], t).float()

    # Warm-up (oneDNN picks and caches its kernels on the first call), keeping each output.
    outputs = [once(*c) for c in CANDIDATES]
    times: list[list[float]] = [[] for _ in CANDIDATES]
    # Round robin: on a shared CPU the load drifts, and every candidate should see the same drift.
    for _ in range(repeats):
        for k, cand in enumerate(CANDIDATES):
            start = time.perf_counter()
            once(*cand)
            times[k].append(time.perf_counter() - start)
    # One contrast → native Euler step, x0 = x1 − v: the output a user sees, in HU.
    reference = model_to_hu((x - outputs[0])[:, 0].numpy())
    rows: list[dict[str, Any]] = []
    for (precision, channels_last), v, ts in zip(CANDIDATES, outputs, times, strict=True):
        err = np.abs(model_to_hu((x - v)[:, 0].numpy()) - reference)
        rows.append(
            {
                "precision": precision,
                "channels_last": channels_last,
                "ms_per_slice": round(1000 * min(ts) / x.shape[0], 2),
                "mean_abs_hu": round(float(err.mean()), 4),
                "p999_abs_hu": round(float(np.quantile(err, 0.999)), 3),
            }
        )
    return rows


def decide(rows: list[dict[str, Any]]) -> tuple[str, bool, str]:
    """(precision, channels_last, reason): the fastest accurate candidate if ≥ MIN_GAIN faster than fp32."""
    base = next(r for r in rows if r["precision"] == "fp32" and not r["channels_last"])
    best, why = base, "fp32 was fastest"
    for r in rows:
        if r is base:
            continue
        accurate = r["mean_abs_hu"] <= MAX_MEAN_ABS_HU and r["p999_abs_hu"] <= MAX_P999_HU
        faster = r["ms_per_slice"] <= (1 - MIN_GAIN) * base["ms_per_slice"]
        if accurate and faster and r["ms_per_slice"] < best["ms_per_slice"]:
            best = r
    name = f"{best['precision']}{' channels-last' if best['channels_last'] else ''}"
    if best is not base:
        why = [f"{name} {best['ms_per_slice']:.1f} vs fp32 {base['ms_per_slice']:.1f} ms/slice"]
    else:
        why = [f"nothing accurate ≥ {MIN_GAIN:.0%} faster than fp32 {base['ms_per_slice']:.1f} ms/slice"]
    why += [
        f"{r['precision']} rejected: off by mean {r['mean_abs_hu']:.2f} / p99.9 {r['p999_abs_hu']:.2f} HU"
        for r in rows
        if r["mean_abs_hu"] > MAX_MEAN_ABS_HU or r["p999_abs_hu"] > MAX_P999_HU
    ]
    return best["precision"], bool(best["channels_last"]), "; ".join(why)


def _phantom_slices(n: int, size: int) -> np.ndarray:
    """(n, size, size) HU of a phantom contrast series (seed 7, outside the demo training seeds' use)."""
    from mfm_engine.phantom import make_phantom_pair

    return make_phantom_pair(7, motion_mm=0.0, n_slices=n, size=size).contrast.hu


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again and rewrite it
    return doc if isinstance(doc, dict) else {}


def choose_cpu_precision(
    model: torch.nn.Module,
    *,
    cache: Path | None = None,
    slices: int = 4,
    size: int = 512,
    repeats: int = 3,
    refresh: bool = False,
) -> PrecisionChoice:
    """The cached choice for this machine and model, else measure, decide, cache and return it."""
    forced = os.environ.get(ENV_OVERRIDE, "").strip().lower()
    if forced in ("fp32", "bf16"):
        return PrecisionChoice(forced, forced == "bf16", "environment", reason=f"{ENV_OVERRIDE}={forced}")
    path = cache or cache_dir() / CACHE_FILE
    key = machine_key(model, size)
    doc = _read_cache(path)
    entry = doc.get(key)
    if isinstance(entry, dict) and not refresh and entry.get("precision") in ("fp32", "bf16"):
        return PrecisionChoice(
            entry["precision"],
            bool(entry.get("channels_last")),
            "cache",
            key,
            list(entry.get("measurements", [])),
            str(entry.get("reason", "")),
        )
    rows = measure(model, _phantom_slices(slices, size), repeats=repeats)
    precision, channels_last, reason = decide(rows)
    choice = PrecisionChoice(precision, channels_last, "measured", key, rows, reason)
    record = asdict(choice)
    record.pop("source")
    record.pop("key")
    record["measured_at"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    doc = _read_cache(path)  # re-read: another process may have added its own entry meanwhile
    doc[key] = record
    with contextlib.suppress(OSError):  # a read-only home only costs a measurement next time
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return choice
