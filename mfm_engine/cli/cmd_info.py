"""`mfm info PATH [--json]`: what a study holds before anyone opens it.

Each series (or image file) with modality, description, size, spacing, HU range and every warning.
Exit status: 0 when every series was read; 2 when the path cannot be read at all, or when some
series could not be read (the others are still reported, the failure is the last line on stderr).
The JSON form (``--json``) is documented in docs/info-json.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mfm_engine.errors import StudyReadError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="list the series in a DICOM folder or image file, with sizes, HU range and warnings",
        description="Describe a study: every series found (DICOM folder, DICOM file, NIfTI, NRRD, "
        "MHA/MHD) with modality, description, size, spacing, HU min/max and every warning.",
    )
    parser.add_argument("path", metavar="PATH", help="DICOM folder, DICOM file, or .nii/.nii.gz/.nrrd/.mha")
    parser.add_argument("--json", action="store_true", help="print JSON (schema: docs/info-json.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Describe the study and print it; raise StudyReadError when a series could not be read."""
    from mfm_engine.io.study import describe_study

    doc = describe_study(args.path)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(format_text(doc))
    failed = [e for e in doc["series"] if e.get("error")]
    if failed:
        sys.stdout.flush()
        raise StudyReadError(
            f"{args.path}: {len(failed)} of {len(doc['series'])} series could not be read "
            f"(first: {failed[0]['error'].splitlines()[0]})"
        )
    return 0


def _fmt_num(x: float) -> str:
    return f"{x:.4g}"


def _entry_lines(entry: dict[str, Any], shared: set[str]) -> list[str]:
    label = f"[{entry['index']}]" if entry.get("index") is not None else "[-]"
    desc = entry.get("description") or "(no description)"
    modality = entry.get("modality") or "?"
    head = f"{label} {modality} '{desc}'"
    if entry.get("size_xyz"):
        head += "  " + "×".join(str(v) for v in entry["size_xyz"]) + " voxels (x×y×z)"
    if entry.get("spacing_xyz_mm"):
        head += "  spacing " + "×".join(_fmt_num(v) for v in entry["spacing_xyz_mm"]) + " mm"
    if entry.get("hu_min") is not None:
        head += f"  HU {_fmt_num(entry['hu_min'])} … {_fmt_num(entry['hu_max'])}"
    flags = [name.upper() for name in ("synthetic", "phantom") if entry.get(name)]
    if flags:
        head += "  [" + ", ".join(flags) + "]"
    lines = [head]
    if entry["source"] == "image":
        lines.append(f"    file: {entry['path']}")
    else:
        uid = entry.get("series_instance_uid") or "(empty)"
        lines.append(f"    series UID: {uid}")
        if entry.get("key") and entry["key"] != entry.get("series_instance_uid"):
            lines.append(f"    key: {entry['key']}")
        if entry.get("transfer_syntax"):
            lines.append(f"    transfer syntax: {entry['transfer_syntax']}")
    for w in entry.get("warnings", []):
        if w not in shared:
            lines.append(f"    warning: {w}")
    if entry.get("error"):
        lines.append(f"    ERROR: {entry['error']}")
    return lines


def format_text(doc: dict[str, Any]) -> str:
    """The human-readable form of describe_study's result."""
    n = len(doc["series"])
    kind = {"folder": "folder", "dicom-file": "DICOM file", "image-file": "image file"}[doc["kind"]]
    head = f"{doc['path']}: {kind}, {n} series"
    if doc["kind"] == "folder":
        head += f" ({doc['files_examined']} files examined, {len(doc['skipped'])} skipped)"
    lines = [head]
    shared = set(doc.get("warnings", []))
    lines += [f"  warning: {w}" for w in doc.get("warnings", [])]
    for entry in doc["series"]:
        lines += _entry_lines(entry, shared)
    return "\n".join(lines)
