"""fp32, fp32 channels-last and bf16 autocast channels-last on this CPU: ms per slice and HU error vs fp32.

    .venv/bin/python benchmarks/cpu_precision.py [--model CKPT] [--slices 4] [--repeats 5]

The same measurement `precision="auto"` makes once per machine and model config
(mfm_engine/precision.py), on phantom contrast slices (seed 7, 512²) in one batch, here with more
repeats, for the shipped demo model and the untrained `demo` config; prints the table and the decision.
"""

from __future__ import annotations

import argparse

import torch

from mfm_engine.checkpoint import load_checkpoint
from mfm_engine.demo import demo_checkpoint
from mfm_engine.models.registry import build_model
from mfm_engine.precision import _phantom_slices, cpu_model_name, decide, measure


def main() -> None:
    """Measure each model and print one table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    hu = _phantom_slices(args.slices, 512)
    models = [
        (
            "shipped demo model (trained, gain/offset head)",
            load_checkpoint(args.model or demo_checkpoint()).model,
        )
    ]
    torch.manual_seed(0)
    models.append(("timeresnet/demo, untrained", build_model({"name": "timeresnet", "preset": "demo"})))
    print(
        f"{cpu_model_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.slices} × 512²"
    )
    print(
        f"| model | variant | ms/slice (min of {args.repeats}) | × fp32 "
        "| mean abs ΔHU vs fp32 | p99.9 abs ΔHU |"
    )
    print("|---|---|---|---|---|---|")
    for name, model in models:
        rows = measure(model, hu, repeats=args.repeats)
        base = rows[0]["ms_per_slice"]
        for r in rows:
            variant = r["precision"] + (" channels-last" if r["channels_last"] else "")
            print(
                f"| {name} | {variant} | {r['ms_per_slice']:.1f} | {r['ms_per_slice'] / base:.2f} | "
                f"{r['mean_abs_hu']:.3f} | {r['p999_abs_hu']:.2f} |"
            )
        precision, cl, reason = decide(rows)
        print(f"| {name} | **choice: {precision}{' channels-last' if cl else ''}** | | | | {reason} |")


if __name__ == "__main__":
    main()
