"""Phantom generation time, varied vs classic acquisition: prints a table (never a test).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_phantom.py                 # 48-slice 512² pairs, seeds 900-903
    .venv/bin/python benchmarks/bench_phantom.py --slices 30 --seeds 1000-1003 --motion 3

Each row: the median and the minimum over the seeds of one ``make_phantom_pair`` call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mfm_engine.phantom import make_phantom_pair  # noqa: E402


def main() -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--motion", type=float, default=0.0)
    ap.add_argument("--seeds", default="900-903", help="first-last seed")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    seeds = range(first, last + 1)
    make_phantom_pair(seeds[0], n_slices=2, size=args.size)  # warm-up (imports, FFT plans)
    print(f"{args.slices} slices of {args.size}², motion {args.motion:g} mm, seeds {args.seeds}")
    print(f"{'acquisition':<12} {'median s':>9} {'min s':>7} {'ms/slice':>9}")
    for mode in ("classic", "varied"):
        times = []
        for seed in seeds:
            t0 = time.perf_counter()
            make_phantom_pair(
                seed, n_slices=args.slices, size=args.size, motion_mm=args.motion, acquisition=mode,
                workers=args.workers,
            )  # fmt: skip
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{mode:<12} {med:9.2f} {min(times):7.2f} {1000 * med / args.slices:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
