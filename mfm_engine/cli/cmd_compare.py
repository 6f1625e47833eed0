"""`mfm compare INPUT`: run a grid of solver × steps settings (or of checkpoints) on a study's slices.

Every setting translates the same axial slices. The table (CSV with --out, Markdown on standard
output) has one row per (model, setting): solver, steps, nfe, seconds, mae_hu, ssim, psnr_db, then
model, direction and slices. The metrics need --reference (the real native of the same patient,
on the input's grid) and are taken inside the reference's body mask; without it they are empty.
--disagreement writes the per-voxel spread (max − min, HU) between all rows as an image.

    mfm compare contrast.nii.gz --reference native.nii.gz --model m.safetensors \\
        --grid euler:1,euler:2,heun:1,rk4:1 --slices 40:44 --out table.csv
    mfm compare contrast.nii.gz --models flow.safetensors,unet.safetensors --grid euler:1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mfm_engine.errors import GeometryMismatchError, MFMError

DEFAULT_GRID_TEXT = "euler:1,euler:2,euler:3,euler:5,midpoint:1,midpoint:3,heun:1,rk3:1,rk4:1,adams:5,dopri5"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="compare solver settings (or checkpoints) on a study's slices: NFE, time, MAE/SSIM/PSNR",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="study to translate (DICOM folder/file, NIfTI, NRRD, MHA)")
    p.add_argument("--reference", default=None, metavar="REF", help="real target series on INPUT's grid")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    p.add_argument(
        "--models",
        default=None,
        metavar="M1,M2",
        help="several checkpoints to compare at the --grid settings (rows = checkpoints × settings)",
    )
    p.add_argument(
        "--grid",
        default=DEFAULT_GRID_TEXT,
        help="solver:steps list (default: %(default)s); a bare name means 1 step",
    )
    p.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="axial slices A..B-1, or K (default: all; --slices=-4: for the last 4)",
    )
    p.add_argument("--direction", choices=["c2n", "n2c"], default="c2n", help="c2n: contrast → native")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, …")
    p.add_argument(
        "--batch-size", type=int, default=None, help="slices per batch (default: from free memory)"
    )
    p.add_argument("--series", default=None, help="series UID or index when a DICOM folder holds several")
    p.add_argument("--out", default=None, metavar="TABLE.csv", help="write the table as CSV")
    p.add_argument(
        "--disagreement",
        default=None,
        metavar="MAP.nii.gz",
        help="write the per-voxel spread (max − min, HU) of all rows over the chosen slices",
    )
    p.set_defaults(func=run)


def _unique_labels(paths: list[str], translators: list) -> list[str]:
    """The models' names; the file stem is added where two names coincide."""
    names = [t.model_name for t in translators]
    labels = [
        name if names.count(name) == 1 else f"{name} [{Path(p).stem}]"
        for name, p in zip(names, paths, strict=True)
    ]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def _read_reference(path: str, volume, series: str | None):
    from mfm_engine.io.study import read_study

    reference = read_study(path, series=series)
    if not reference.same_geometry(volume):
        raise GeometryMismatchError(
            f"the reference {path} is not on the input's grid:\n"
            f"  input:     {volume.geometry_text()}\n  reference: {reference.geometry_text()}"
        )
    return reference


def run(args: argparse.Namespace) -> int:
    """Translate the chosen slices with every setting and model; print the Markdown table."""
    from tqdm import tqdm

    from mfm_engine.cli.cmd_translate import load_translator
    from mfm_engine.compare import (
        compare_grid,
        disagreement,
        markdown_table,
        parse_grid,
        parse_slices,
        write_csv,
    )
    from mfm_engine.io.study import read_study

    settings = parse_grid(args.grid)
    if args.batch_size is not None and args.batch_size < 1:
        raise MFMError(f"--batch-size must be >= 1, got {args.batch_size}")
    volume = read_study(args.input, series=args.series)
    reference = _read_reference(args.reference, volume, args.series) if args.reference else None
    chosen = parse_slices(args.slices, volume.shape[0])
    paths = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else [args.model]
    translators = [load_translator(p, args.device) for p in paths]
    labels = _unique_labels([str(p) if p else "demo" for p in paths], translators)
    sl = slice(chosen.start, chosen.stop)
    with tqdm(total=len(labels) * len(settings), desc="settings", unit="run", leave=False) as bar:
        result = compare_grid(
            dict(zip(labels, translators, strict=True)),
            volume.hu[sl],
            settings,
            direction=args.direction,
            reference=None if reference is None else reference.hu[sl],
            batch_size=args.batch_size,
            slices=chosen,
            progress=lambda done, _total, _run: bar.update(done - bar.n),
        )
    if args.out:
        write_csv(result.rows, args.out)
    where = f"slices {chosen.start}:{chosen.stop} of {volume.shape[0]}"
    note = "metrics in the reference's body mask" if reference is not None else "no reference: no metrics"
    print(f"mfm compare: {args.input}, {where}, {args.direction}, {note}\n")
    print(markdown_table(result.rows), end="")
    if args.disagreement:
        _write_disagreement(args.disagreement, volume, chosen, disagreement([r.hu for r in result.runs]))
        print(f"\nwrote the disagreement map (max − min over {len(result.runs)} rows) to {args.disagreement}")
    return 0


def _write_disagreement(path: str, volume, chosen: range, spread) -> None:
    from mfm_engine.io.write import write_study
    from mfm_engine.volume import Volume

    origin = tuple(volume.index_to_physical((0.0, 0.0, float(chosen.start))))
    slab = Volume(
        spread,
        volume.spacing,
        origin,
        volume.direction.copy(),
        {
            "modality": "CT",
            "series_description": "SYNTHETIC solver disagreement (max - min, HU)",
            "synthetic": True,
            "phantom": bool(volume.meta.get("phantom", False)),
        },
    )
    from mfm_engine.io.image_read import image_suffix

    write_study(slab, path, format="auto" if image_suffix(Path(path)) else "nifti")
