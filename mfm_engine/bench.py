"""Inference benchmarks: engine cost per slice and NFE against a bare forward pass of the same network.

Benchmarks print tables; tests never assert timings. `mfm bench` is the command-line face.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mfm_engine.models.registry import build_model, count_parameters
from mfm_engine.translate import Translator


@dataclass
class BenchRow:
    """One model config on one device."""

    model: str
    device: str
    precision: str  # what the engine ran: the measured choice for "auto" on a CPU
    params_m: float
    batch: int
    fp32_forward_ms: float  # bare network forward in fp32, contiguous, per slice: the baseline
    forward_ms: float  # bare network forward in the engine's precision and layout, per slice
    engine_ms_per_nfe: float  # Translator, per slice per NFE (Euler, 1 step)
    slices_per_s: float
    overhead_pct: float  # engine over the bare forward in the same precision
    peak_mem_mb: float
    choice: str = ""  # how the precision was chosen (measured / cached / forced)

    @property
    def vs_fp32(self) -> float:
        """Engine time per slice per NFE as a fraction of the fp32 bare forward."""
        return self.engine_ms_per_nfe / self.fp32_forward_ms


def _timeit(fn, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Process-wide peak resident set (Linux reports KiB): an upper bound for this row.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(
    config: dict,
    *,
    device: str = "auto",
    precision: str = "auto",
    size: int = 512,
    batch: int = 1,
    repeats: int = 5,
    checkpoint: str | None = None,
) -> BenchRow:
    """Time a bare forward and the engine's 1-NFE Euler translation of the same batch of slices.

    With ``checkpoint`` the trained weights are timed (``config`` is then only a label): the CPU
    precision measurement judges accuracy on them, and untrained weights fail it.
    """
    torch.manual_seed(0)
    if checkpoint is not None:
        from mfm_engine.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint, device="cpu").model
    else:
        model = build_model(config)
    tr = Translator(model, device=device, precision=precision, model_name=config.get("preset", ""))
    dev = tr.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rng = np.random.default_rng(0)
    hu = rng.normal(0, 200, size=(batch, size, size)).astype(np.float32)
    x = torch.from_numpy(hu / 1000.0).unsqueeze(1).to(dev)
    t = torch.ones(batch, device=dev)
    x_engine = x.contiguous(memory_format=torch.channels_last) if tr.channels_last else x

    def bare():
        with torch.inference_mode(), tr._autocast():
            tr._net(x_engine, t)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def bare_fp32():
        with torch.inference_mode():
            tr._net(x, t)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def engine():
        tr.translate_array(hu, direction="c2n", solver="euler", steps=1)

    forward_s = _timeit(bare, repeats)
    engine_s = _timeit(engine, repeats)
    # The fp32 baseline runs the same module contiguous; channels-last is undone for it and redone after.
    if tr.channels_last:
        tr.model.to(memory_format=torch.contiguous_format)
    fp32_s = _timeit(bare_fp32, repeats)
    if tr.channels_last:
        tr.model.to(memory_format=torch.channels_last)
    name = config["name"] + (f"/{config['preset']}" if config.get("preset") else "")
    if checkpoint is not None:
        name = f"{name} ({Path(checkpoint).name})"
    return BenchRow(
        model=name,
        device=str(dev),
        precision=tr.precision + (" channels-last" if tr.channels_last else ""),
        params_m=count_parameters(model) / 1e6,
        batch=batch,
        fp32_forward_ms=1000 * fp32_s / batch,
        forward_ms=1000 * forward_s / batch,
        engine_ms_per_nfe=1000 * engine_s / batch,
        slices_per_s=batch / engine_s,
        overhead_pct=100 * (engine_s / forward_s - 1),
        peak_mem_mb=_peak_mb(dev),
        choice=tr.precision_choice.summary() if tr.precision_choice else "",
    )


def bench_volume_file(
    checkpoint: str | None, *, slices: int = 100, device: str = "auto"
) -> tuple[float, float]:
    """(seconds from input NIfTI to output NIfTI, seconds of translation alone) for a phantom volume."""
    from mfm_engine.io.image_write import write_image
    from mfm_engine.io.study import read_study
    from mfm_engine.phantom import make_phantom_pair

    contrast = make_phantom_pair(7, motion_mm=0.0, n_slices=slices).contrast
    tr = (
        Translator.from_checkpoint(checkpoint, device=device)
        if checkpoint
        else Translator(
            build_model({"name": "timeresnet", "preset": "demo"}), device=device, model_name="demo"
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.nii.gz", Path(tmp) / "out.nii.gz"
        write_image(contrast, src)
        start = time.perf_counter()
        vol = read_study(src)
        t0 = time.perf_counter()
        out = tr.translate_volume(vol, direction="c2n", solver="euler", steps=1)
        t1 = time.perf_counter()
        write_image(out, dst)
        return time.perf_counter() - start, t1 - t0


def format_table(rows: list[BenchRow]) -> str:
    """Markdown table of benchmark rows."""
    head = (
        "| model | device | precision | params (M) | batch | fp32 bare forward ms/slice "
        "| bare forward ms/slice (same precision) | engine ms/slice/NFE | engine / fp32 forward "
        "| slices/s (1 NFE) | engine overhead | peak memory MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"| {r.model} | {r.device} | {r.precision} | {r.params_m:.2f} | {r.batch} | "
        f"{r.fp32_forward_ms:.1f} | {r.forward_ms:.1f} | {r.engine_ms_per_nfe:.1f} | {r.vs_fp32:.2f}× | "
        f"{r.slices_per_s:.1f} | "
        f"{r.overhead_pct:+.1f} % | {r.peak_mem_mb:.0f} |"
        for r in rows
    ]
    notes = [f"- {r.model}: precision {r.choice}" for r in rows if r.choice]
    return "\n".join([head, *lines, *([""] + notes if notes else [])])
