"""Forward-pass timing of the velocity networks at 512×512: prints a table (never a test).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_models.py                  # demo presets, fp32, CPU
    .venv/bin/python benchmarks/bench_models.py --variants       # + channels_last, bf16 autocast
    .venv/bin/python benchmarks/bench_models.py --paper          # + the paper presets (slow on CPU)
    .venv/bin/python benchmarks/bench_models.py --device cuda --paper --variants --batch 8

Each row: one forward of a batch of slices under ``torch.inference_mode`` after warm-up runs;
the median and the minimum of ``--repeats`` runs, per slice.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfm_engine.models import MODEL_PRESETS, build_model, count_parameters  # noqa: E402


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def time_forward(
    model: torch.nn.Module,
    *,
    device: torch.device,
    size: int,
    batch: int,
    repeats: int,
    warmup: int,
    channels_last: bool,
    bf16: bool,
) -> tuple[float, float]:
    """(median, min) seconds per slice of one forward at size×size."""
    x = torch.randn(batch, 1, size, size, device=device)
    t = torch.full((batch,), 0.5, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x, t)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) / batch, min(times) / batch


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit code 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--paper", action="store_true", help="also the paper presets (≈ 10 s/slice on 2 CPU cores)"
    )
    parser.add_argument("--variants", action="store_true", help="also channels_last and bf16 autocast")
    parser.add_argument("--models", nargs="*", default=sorted(MODEL_PRESETS), help="model names")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    flags = cpu_flags()
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"CPU bf16 units: amx_bf16={'amx_bf16' in flags} avx512_bf16={'avx512_bf16' in flags}"
    )
    runs = f"{args.repeats} runs after {args.warmup} warm-up"
    print(f"input {args.batch}×1×{args.size}×{args.size}, inference_mode, {runs}")
    variants = [("fp32", False, False)]
    if args.variants:
        variants += [("fp32 channels_last", True, False), ("bf16 autocast", False, True)]
    presets = ["demo"] + (["paper"] if args.paper else [])
    header = (
        f"{'model':<17} {'preset':<6} {'params (M)':>10} {'variant':<19} "
        f"{'ms/slice med':>12} {'min':>8} {'slices/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in args.models:
        for preset in presets:
            if preset not in MODEL_PRESETS[name]:
                continue
            torch.manual_seed(0)
            model = build_model({"name": name, "preset": preset}).eval().to(device)
            params = count_parameters(model) / 1e6
            for label, channels_last, bf16 in variants:
                med, low = time_forward(
                    model,
                    device=device,
                    size=args.size,
                    batch=args.batch,
                    repeats=args.repeats if preset == "demo" else max(2, args.repeats // 3),
                    warmup=args.warmup if preset == "demo" else 1,
                    channels_last=channels_last,
                    bf16=bf16,
                )
                print(
                    f"{name:<17} {preset:<6} {params:>10.2f} {label:<19} {med * 1e3:>12.1f} "
                    f"{low * 1e3:>8.1f} {1 / med:>9.1f}",
                    flush=True,
                )
            model = model.to(memory_format=torch.contiguous_format)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
