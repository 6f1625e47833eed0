"""``python -m training COMMAND``: prepare, phantom-data, fit, evaluate, demo-report (docs/training.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mfm_engine.errors import MFMError


def _cmd_prepare(args: argparse.Namespace) -> int:
    from training.pairs import assign_splits, find_pairs, parse_fractions, read_manifest
    from training.prepare import load_legend, prepare

    pre: list[str] = []
    if args.manifest:
        pairs = read_manifest(args.manifest)
        source = f"manifest {args.manifest}"
    else:
        pairs, pre = find_pairs(args.root)
        source = f"folder {args.root}"
    pairs = assign_splits(pairs, parse_fractions(args.splits), seed=args.split_seed)
    report = prepare(
        pairs,
        args.out,
        registration=args.registration,
        keep_registered=not args.no_registered,
        legend=load_legend(args.legend),
        description=args.description or f"paired contrast/native series from {source}",
        pre_report=pre,
        progress=not args.quiet,
    )
    print("\n".join(report.lines))
    print(f"cache: {Path(args.out) / 'index.json'}")
    return 0


def _cmd_phantom_data(args: argparse.Namespace) -> int:
    from training.phantom_data import PhantomPlan, phantom_to_cache, phantom_to_files

    splits = None
    if args.splits:
        try:
            splits = tuple(int(v) for v in args.splits.split(","))
        except ValueError:
            splits = ()
        if len(splits) != 3:
            raise SystemExit("phantom-data: --splits must be three counts like 32,4,4")
    plan = PhantomPlan(
        args.patients, args.seed0, args.slices, args.size, args.motion, splits,  # type: ignore[arg-type]
        args.acquisition, args.identity_share,
    )  # fmt: skip
    if args.cache:
        index = phantom_to_cache(plan, args.cache, registration=args.registration, progress=not args.quiet)
        print(f"cache: {index}")
    else:
        manifest = phantom_to_files(plan, args.out, fmt=args.format, progress=not args.quiet)
        print(f"manifest: {manifest}")
    print(plan.description())
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.trainer import fit

    cfg = load_config(args.config, args.set)
    result = fit(
        cfg,
        resume=args.resume if args.resume is not None else False,
        init_from=args.init_from,
        stop_after_steps=args.stop_after_steps,
        progress=not args.quiet,
    )
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 speaks for the run
    if result.last_checkpoint or result.best_checkpoint:
        print(f"last: {result.last_checkpoint}")
        print(f"best: {result.best_checkpoint}")
    state = "stopped" if result.stopped_early else "finished"
    print(f"{state} at step {result.step} of {result.total_steps}; run folder {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from training.cache import SliceCache
    from training.evaluate import ABLATION, evaluate, parse_seeds, patients_from_cache, patients_from_phantom

    if args.cache:
        cache = SliceCache(args.cache)
        patients = patients_from_cache(cache, args.splits, max_slices=args.max_slices)
        legend = cache.legend or None
    else:
        from mfm_engine.phantom import LEGEND

        patients = patients_from_phantom(
            parse_seeds(args.phantom_seeds), split="holdout", slices=args.max_slices or 30, size=args.size
        )
        legend = dict(LEGEND)
    results = evaluate(
        args.checkpoints,
        patients,
        out=args.out,
        legend=legend,
        device=args.device,
        ablation=None if args.no_ablation else ABLATION,
        ddpm_steps=args.ddpm_steps,
        progress=not args.quiet,
    )
    print(results["markdown"])
    if args.out:
        print(f"tables: {Path(args.out) / 'tables.md'}")
    return 0


def _cmd_demo_report(args: argparse.Namespace) -> int:
    from training.demo_report import DEFAULT_SEEDS, demo_report, write_report
    from training.evaluate import parse_seeds

    report = demo_report(
        args.checkpoint,
        seeds=parse_seeds(args.seeds or DEFAULT_SEEDS),
        slices=args.slices,
        size=args.size,
        solver=args.solver,
        steps=args.steps,
        device=args.device,
    )
    print(report.markdown())
    if args.out:
        write_report(report, args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.passed else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from training.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out, report=args.report)
    print(f"exported {args.checkpoint} -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="MFM Studio training: prepare data, train flow/regression/DDPM models, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("prepare", help="pair, check, register and cache contrast/native series")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--manifest", help="CSV: patient,contrast,native[,split][,labels] (paths relative to it)"
    )
    src.add_argument("--root", help="folder with ROOT/<patient>/contrast and ROOT/<patient>/native")
    p.add_argument("--out", required=True, help="cache folder to write (re-running skips finished patients)")
    p.add_argument(
        "--registration",
        default="SyNOnly",
        choices=["SyNOnly", "SyN", "Affine", "Rigid", "none"],
        help="ANTs transform for contrast → native (default: SyNOnly, as the paper)",
    )
    p.add_argument(
        "--splits", default="0.8,0.1,0.1", help="train,test,holdout fractions for pairs without a split"
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the patient shuffle for --splits")
    p.add_argument("--legend", help="JSON {value: name} of the label maps (default: from the label files)")
    p.add_argument("--description", default="", help="what the data is (stored in the cache and checkpoints)")
    p.add_argument("--no-registered", action="store_true", help="do not keep the registered contrast volumes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("phantom-data", help="make phantom pairs: study files + manifest, or a cache directly")
    dst = p.add_mutually_exclusive_group(required=True)
    dst.add_argument("--out", help="folder for OUT/<patient>/{contrast,native,labels} and OUT/manifest.csv")
    dst.add_argument("--cache", help="write straight into a slice cache (fast; no study files)")
    p.add_argument("--patients", type=int, default=40)
    p.add_argument(
        "--seed0", type=int, default=1000, help="first phantom seed; patients are seed0 … seed0+N-1"
    )
    p.add_argument(
        "--slices", type=int, default=30, help="slices per patient (a slab centred on the kidneys)"
    )
    p.add_argument("--size", type=int, default=512, help="in-plane matrix")
    p.add_argument("--motion", type=float, default=0.0, help="motion between the phases in mm (0: aligned)")
    p.add_argument("--splits", help="patients per split as train,test,holdout counts (default 80/10/10 %%)")
    p.add_argument(
        "--acquisition",
        default="varied",
        choices=["varied", "classic"],
        help="phantom scanner variety: varied (spacing, scan circle + padding, kernel noise, timing, "
        "arms, identity patients; default) or classic (the phantom before issue 14)",
    )
    p.add_argument(
        "--identity-share",
        type=float,
        default=None,
        help="share of patients whose contrast series has no iodine (default: 0.1 varied, 0 classic)",
    )
    p.add_argument("--format", default="nifti", choices=["nifti", "dicom"], help="study file format (--out)")
    p.add_argument(
        "--registration",
        default="none",
        choices=["SyNOnly", "SyN", "Affine", "Rigid", "none"],
        help="register contrast → native before caching (--cache; useful with --motion)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_phantom_data)

    p = sub.add_parser("fit", help="train a model from a config")
    p.add_argument("--config", required=True, help="JSON or TOML config (see training/configs)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=2 --set out=runs/x (repeatable)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="STATE",
        help="continue the run in the config's out folder (or from STATE: a run folder or state JSON)",
    )
    p.add_argument("--init-from", help="start from a checkpoint's weights (same model), a new run otherwise")
    p.add_argument("--stop-after-steps", type=int, help="stop (state saved) after this many more steps")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("evaluate", help="the paper's tables for checkpoints")
    p.add_argument(
        "--checkpoints", nargs="+", required=True, help=".safetensors checkpoints (or their .json)"
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--cache", help="slice cache: evaluates its test and holdout splits")
    data.add_argument("--phantom-seeds", help="phantom patients made on the fly, e.g. 900-903 (motion 0)")
    p.add_argument("--splits", nargs="+", default=["test", "holdout"], help="cache splits to evaluate")
    p.add_argument(
        "--max-slices", type=int, help="central slices per patient (phantom: slab size, default 30)"
    )
    p.add_argument("--size", type=int, default=512, help="phantom in-plane matrix")
    p.add_argument("--out", help="folder for tables (.md, .csv), tables.md and results.json")
    p.add_argument("--no-ablation", action="store_true", help="skip the solver ablation (Table 5)")
    p.add_argument("--ddpm-steps", type=int, default=50, help="DDIM steps for DDPM checkpoints")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo-report", help="check the demo acceptance on held-out phantom patients")
    p.add_argument("checkpoint")
    p.add_argument("--seeds", help="held-out phantom seeds (default 900-903)")
    p.add_argument("--slices", type=int, default=30)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--solver", default="euler")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for demo_report.md / .json")
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    p.set_defaults(func=_cmd_demo_report)

    p = sub.add_parser("export", help="copy a checkpoint under a new name, with a report in its sidecar")
    p.add_argument("checkpoint")
    p.add_argument("out", help="new .safetensors path (its .json sidecar is written beside it)")
    p.add_argument("--report", help="a JSON report (e.g. demo_report.json) to keep in the sidecar")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; problems with the input are one plain line on stderr, exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MFMError as exc:
        print(f"training {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"training {args.command}: interrupted (finished work is kept; re-run to continue)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
