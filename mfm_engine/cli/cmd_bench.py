"""`mfm bench`: a table of inference speed per model config and device (benchmarks, never tests)."""

from __future__ import annotations

import argparse

DEFAULT_MODELS = "timeresnet:demo,monai_unet:demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="time the engine per slice and NFE against a bare forward pass, per model config and device",
        description="Prints a Markdown table: ms per 512² slice per NFE, slices per second, peak memory "
        "and the engine's overhead over a bare forward pass of the same network (goal ≤ 10 %% on CPU).",
    )
    p.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"NAME:PRESET,… (default {DEFAULT_MODELS}; timeresnet:paper is the paper's 124.6 M network)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--size", type=int, default=512, help="slice size in pixels (default 512)")
    p.add_argument("--batch", type=int, default=1, help="slices per forward (default 1)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--volume",
        type=int,
        default=0,
        metavar="SLICES",
        help="also time a phantom volume of this many slices from input file to output file",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a checkpoint: its trained weights get a row of their own, and --volume uses it "
        "(default: untrained demo config)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run each benchmark and print the table."""
    import torch

    from mfm_engine.bench import bench_model, bench_volume_file, format_table

    # (config, checkpoint): each preset untrained, then --model's trained weights in a row of their own
    # (the CPU precision choice depends on the weights).
    targets: list[tuple[dict, str | None]] = []
    for item in args.models.split(","):
        name, _, preset = item.strip().partition(":")
        targets.append(({"name": name, **({"preset": preset} if preset else {})}, None))
    if args.model:
        from mfm_engine.checkpoint import read_checkpoint_meta

        targets.append((dict(read_checkpoint_meta(args.model).model), args.model))
    rows = [
        bench_model(
            config,
            device=args.device,
            precision=args.precision,
            size=args.size,
            batch=args.batch,
            repeats=args.repeats,
            checkpoint=checkpoint,
        )
        for config, checkpoint in targets
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(format_table(rows))
    if args.volume:
        total, translate = bench_volume_file(args.model, slices=args.volume, device=args.device)
        print(
            f"\n512×512×{args.volume} phantom volume, Euler 1 step: {total:.1f} s from input NIfTI to output "
            f"NIfTI ({translate:.1f} s translating)"
        )
    return 0
