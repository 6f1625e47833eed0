"""`mfm reader-study create|analyze`: design a blinded real-vs-synthetic study, and score its answers.

    mfm reader-study create (--cases CASES.csv | --phantom-seeds 1-20) --mode paired|single --n N --seed S \\
        [--model CKPT --solver euler --steps 10] --out BUNDLE --key KEY.json
    mfm reader-study analyze BUNDLE KEY.json RESULTS.sqlite... --out REPORT_DIR
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `reader-study` subcommand with its `create` and `analyze` actions."""
    p = subparsers.add_parser(
        "reader-study",
        help="design a blinded real-vs-synthetic reader study, or analyse its answers",
        description="Blinded reader studies: can radiologists tell real natives from synthetic ones?",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    c = sub.add_parser(
        "create",
        help="choose cases and write the blinded bundle plus a separate key",
        description="Choose cases (each needs a real native and a synthetic native, or a contrast series "
        "to make one from with --model), write the bundle for the readers (volumes under random names, a "
        "manifest without truth) and the key for the coordinator (the truth, tied to the bundle by SHA-256).",
    )
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--cases", metavar="CSV", help="CSV with columns id, native, synthetic and/or contrast (study paths)"
    )
    src.add_argument(
        "--phantom-seeds",
        nargs="+",
        metavar="SEEDS",
        help="phantom patients, e.g. 1-20 or 3 5 8 (needs --model)",
    )
    c.add_argument("--phantom-slices", type=int, default=16, help="slices per phantom patient (default 16)")
    c.add_argument("--phantom-size", type=int, default=256, help="phantom in-plane matrix (default 256)")
    c.add_argument(
        "--mode",
        choices=("paired", "single"),
        required=True,
        help="paired: real and synthetic side by side; single: one volume per case, half real",
    )
    c.add_argument("--n", type=int, required=True, help="number of cases (pairs, or single images: even)")
    c.add_argument(
        "--seed", type=int, required=True, help="seed of the case choice and the sides (kept in the key)"
    )
    c.add_argument("--model", metavar="CKPT", help="checkpoint to make missing synthetic natives with")
    c.add_argument("--solver", default="euler", help="ODE solver for --model (default euler)")
    c.add_argument("--steps", type=int, default=10, help="solver steps for --model (default 10)")
    c.add_argument("--device", default="auto", help="device for --model: auto, cpu, cuda, mps")
    c.add_argument(
        "--window",
        default="abdomen (Slicer)",
        help="initial window preset (default 'abdomen (Slicer)', W350/L40 as the paper's readers used)",
    )
    c.add_argument(
        "--allow-revisions",
        action="store_true",
        help="let readers change an answered case (recorded as a revision)",
    )
    c.add_argument("--out", required=True, metavar="BUNDLE", help="new folder for the readers' bundle")
    c.add_argument(
        "--key", required=True, metavar="KEY.json", help="where to write the key (outside the bundle)"
    )
    c.set_defaults(func=run_create)

    a = sub.add_parser(
        "analyze",
        help="score readers' answers against the key: accuracy, CIs, tests, ROC, agreement, d′; report",
        description="Check that bundle, key and results belong together (hashes, case ids), then write "
        "report.md, readers.csv, answers.csv, ratings.imrmc (iMRMC input) and PNG plots.",
    )
    a.add_argument("bundle", metavar="BUNDLE", help="the study bundle folder")
    a.add_argument("key", metavar="KEY.json", help="the study's key")
    a.add_argument("results", nargs="+", metavar="RESULTS.sqlite", help="one results file per reader")
    a.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    a.set_defaults(func=run_analyze)


def run_create(args: argparse.Namespace) -> int:
    """Build the candidate list and write bundle + key, with a progress bar."""
    from tqdm import tqdm

    from mfm_engine.reader_study.design import (
        SynthesisSettings,
        create_study,
        describe_design,
        parse_seeds,
        phantom_sources,
        read_cases_csv,
    )

    if args.cases:
        sources = read_cases_csv(args.cases)
        description = f"cases CSV {args.cases}"
    else:
        seeds = parse_seeds(args.phantom_seeds)
        sources = phantom_sources(seeds, n_slices=args.phantom_slices, size=args.phantom_size)
        seeds_text = ", ".join(args.phantom_seeds)
        description = f"phantom seeds {seeds_text} ({args.phantom_slices} slices, {args.phantom_size}²)"
    synthesis = SynthesisSettings(args.model, args.solver, args.steps, args.device) if args.model else None
    with tqdm(total=args.n, unit="case", file=sys.stderr, disable=None) as bar:

        def progress(done: int, total: int, text: str) -> None:
            bar.n = done
            bar.set_postfix_str(text, refresh=True)

        result = create_study(
            sources,
            args.out,
            args.key,
            mode=args.mode,
            n=args.n,
            seed=args.seed,
            synthesis=synthesis,
            window=args.window,
            allow_revisions=args.allow_revisions,
            source_description=description,
            progress=progress,
        )
    print(describe_design(result))
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse and write the report; print the per-reader lines."""
    from mfm_engine.reader_study.analysis import analyze_files
    from mfm_engine.reader_study.report import write_report

    analysis = analyze_files(args.bundle, args.key, args.results)
    paths = write_report(analysis, args.out)
    for r in analysis.readers:
        extra = f", AUC {r.auc:.3f}" if analysis.mode == "single" else ""
        print(
            f"{r.reader}: {r.n_correct}/{r.n_answered} correct ({100 * r.accuracy:.1f} %, "
            f"95 % CI {100 * r.ci[0]:.1f}–{100 * r.ci[1]:.1f} %), p = {r.p_value:.3g}{extra}"
        )
    print(f"report: {paths[0]}")
    return 0
