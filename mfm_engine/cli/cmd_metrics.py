"""`mfm metrics A B [--mask body|none|FILE]`: MAE (HU), SSIM and PSNR of A against reference B."""

from __future__ import annotations

import argparse
import json

import numpy as np

from mfm_engine.errors import GeometryMismatchError, MFMError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `metrics` subcommand."""
    p = subparsers.add_parser(
        "metrics",
        help="MAE (HU), SSIM and PSNR of an image against a reference on the same grid",
        description="Compare A (e.g. a synthetic native) with reference B (e.g. the real native). "
        "Both are clipped to [-1000, 1000] HU; PSNR and SSIM use a 2000 HU data range; a volume's "
        "SSIM is the mean of its axial slices' SSIM.",
    )
    p.add_argument("a", metavar="A", help="image to judge (study path)")
    p.add_argument("b", metavar="B", help="reference (study path), same grid as A")
    p.add_argument(
        "--mask",
        default="body",
        help="'body' (default: body mask of the reference), 'none', "
        "or a label/mask image (non-zero = inside)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _mask(spec: str, reference):
    from mfm_engine.io.study import read_study
    from mfm_engine.metrics import body_mask

    if spec == "none":
        return None
    if spec == "body":
        return body_mask(reference)
    mask = read_study(spec)
    if not mask.same_geometry(reference):
        raise GeometryMismatchError(
            f"mask {spec} ({mask.geometry_text()}) is not on the reference's grid "
            f"({reference.geometry_text()})"
        )
    inside = mask.hu != 0
    if not inside.any():
        raise MFMError(f"mask {spec} has no non-zero voxel")
    return inside


def run(args: argparse.Namespace) -> int:
    """Read both studies, check their grids agree, print the three metrics."""
    from mfm_engine.io.study import read_study
    from mfm_engine.metrics import compare

    a, b = read_study(args.a), read_study(args.b)
    if not a.same_geometry(b):
        raise GeometryMismatchError(
            f"{args.a} and {args.b} are not on the same grid:\n"
            f"  A: {a.geometry_text()}\n  B: {b.geometry_text()}"
        )
    mask = _mask(args.mask, b)
    values = compare(a, b, mask)
    voxels = int(mask.sum()) if mask is not None else int(np.prod(a.shape))
    if args.json:
        print(json.dumps({**values, "mask": args.mask, "voxels": voxels}, indent=2))
        return 0
    print(f"| metric | value |  (A = {args.a}, B = {args.b}, mask = {args.mask}, {voxels} voxels)")
    print("|---|---|")
    print(f"| MAE (HU) | {values['mae_hu']:.2f} |")
    print(f"| SSIM | {values['ssim']:.4f} |")
    print(f"| PSNR (dB) | {values['psnr_db']:.2f} |")
    return 0
