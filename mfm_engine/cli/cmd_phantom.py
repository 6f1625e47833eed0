"""`mfm phantom OUT --seed N`: write one procedural phantom patient (native, arterial, labels).

Writes ``OUT/native``, ``OUT/contrast`` and ``OUT/labels`` as DICOM series folders (one study:
same patient and StudyInstanceUID; native and labels share a Frame of Reference) or, with
``--format nifti``, ``OUT/native.nii.gz``, ``OUT/contrast.nii.gz`` and ``OUT/labels.nii.gz``.
``OUT/labels.json`` always holds the legend (label value → tissue name) and the patient's HU table;
for NIfTI it is also the label image's sidecar. DICOM labels are a CT-like series whose pixel values
are the label numbers (window 13/28 so they show as grey steps). See docs/phantom.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mfm_engine.errors import StudyWriteError

LEGEND_FORMAT = "mfm-studio phantom labels"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `phantom` subcommand."""
    parser = subparsers.add_parser(
        "phantom",
        help="write a procedural paired abdominal phantom (native + arterial + labels)",
        description="Generate phantom patient SEED (a stand-in, not a patient) and write its native and "
        "arterial CT and its label map (in the native's geometry) under OUT.",
    )
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument("--seed", type=int, required=True, help="patient seed (≥ 0); same seed, same patient")
    parser.add_argument(
        "--motion",
        type=float,
        default=3.0,
        metavar="MM",
        help="motion between the phases in mm (default 3; 0 = perfectly aligned pair for evaluation)",
    )
    parser.add_argument("--format", choices=("dicom", "nifti"), default="dicom", help="output format")
    parser.add_argument(
        "--slices", type=int, default=None, metavar="N", help="only N consecutive slices (default: all)"
    )
    parser.add_argument(
        "--start", type=int, default=None, metavar="K", help="first slice of --slices (0 = most inferior)"
    )
    parser.add_argument("--size", type=int, default=512, help="in-plane matrix (default 512)")
    parser.add_argument(
        "--noise", type=float, default=None, metavar="HU", help="noise σ (default: the patient's, 5–25 HU)"
    )
    parser.add_argument(
        "--acquisition",
        choices=("varied", "classic"),
        default="varied",
        help="scanner variety: varied (spacing, scan circle + padding, kernel noise, timing, arms; "
        "default) or classic (the phantom before issue 14)",
    )
    parser.add_argument(
        "--timing",
        type=float,
        default=None,
        help="contrast timing 0 (early arterial) … 0.5 (late arterial) … 1 (portal venous); "
        "default: the patient's draw",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the pair and write the three outputs plus the legend."""
    from mfm_engine.io.write import write_study
    from mfm_engine.phantom import make_phantom_pair

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise StudyWriteError(f"{out}: exists and is not a folder")
    t0 = time.perf_counter()
    pair = make_phantom_pair(
        args.seed,
        motion_mm=args.motion,
        n_slices=args.slices,
        start_slice=args.start,
        size=args.size,
        noise_hu=args.noise,
        acquisition=args.acquisition,
        timing=args.timing,
    )
    t_gen = time.perf_counter() - t0
    nifti = args.format == "nifti"
    legend_path = out / "labels.json"
    if legend_path.exists() and not args.overwrite and not nifti:
        raise StudyWriteError(f"{legend_path}: already exists; pass --overwrite to replace it")
    seed = args.seed
    jobs = (
        ("native", pair.native, f"PHANTOM native seed {seed}", 1, {}),
        ("contrast", pair.contrast, f"PHANTOM arterial seed {seed}", 2, {}),
        ("labels", pair.labels, f"PHANTOM labels seed {seed}", 3, {"WindowCenter": 13, "WindowWidth": 28}),
    )
    written: list[str] = []
    for name, volume, description, number, window in jobs:
        if nifti:
            path = write_study(
                volume, out / f"{name}.nii.gz", format="nifti", series_description=description,
                overwrite=args.overwrite,
            )  # fmt: skip
        else:
            write_study(
                volume, out / name, format="dicom", series_description=description, series_number=number,
                overwrite=args.overwrite, overrides=window or None,
            )  # fmt: skip
            path = out / name
        written.append(str(path))

    doc = _legend_doc(pair)
    if nifti:
        # labels.json is already the label image's sidecar: add the legend to it.
        doc = {**json.loads(legend_path.read_text(encoding="utf-8")), **doc}
    try:
        legend_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    except OSError as exc:
        raise StudyWriteError(f"{legend_path}: could not write: {exc.strerror or exc}") from exc
    written.append(str(legend_path))

    z, y, x = pair.native.shape
    sx, sy, sz = pair.native.spacing
    print(
        f"phantom seed {seed}: {x}×{y}×{z} voxels, {sx:.3f}×{sy:.3f}×{sz:g} mm, motion {args.motion:g} mm, "
        f"noise σ {pair.native.meta['phantom_params']['noise_hu']:.1f} HU (generated in {t_gen:.1f} s)"
    )
    for path in written:
        print(f"  wrote {path}")
    return 0


def _legend_doc(pair: Any) -> dict[str, Any]:
    """The legend document: label value → tissue name, plus the HU this patient was given."""
    return {
        "legend_format": LEGEND_FORMAT,
        "legend": {str(k): v for k, v in sorted(pair.legend.items())},
        "phantom_seed": pair.native.meta["phantom_seed"],
        "labels_geometry": "native",
        "hu_native_arterial": {k: [round(v[0], 2), round(v[1], 2)] for k, v in pair.hu_table.items()},
        "note": "Procedural phantom (MFM Studio), not a patient. Labels are in the native series' geometry.",
    }
