"""Lossy compression of a DICOM source: detect it, say so, and let derived images carry it on.

A synthetic native made from a lossy input inherits the loss (the network sees the artefacts), so
PS3.3 C.7.6.1.1.5 wants the derived image marked LossyImageCompression "01" with the ratio and
method of every lossy step. What counts as lossy, per file:
- LossyImageCompression "01" in the header (the sender says so), or
- a transfer syntax that is lossy by definition (JPEG baseline/extended, JPEG-LS near-lossless,
  JPEG 2000 / HTJ2K "lossy or lossless" with no "00" in the header to say it was kept lossless).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Transfer syntax → (method term for LossyImageCompressionMethod, plain name, lossy for certain).
# "Lossy for certain" is False where the syntax allows both and only the header can tell.
LOSSY_SYNTAXES: dict[str, tuple[str, str, bool]] = {
    "1.2.840.10008.1.2.4.50": ("ISO_10918_1", "JPEG baseline", True),
    "1.2.840.10008.1.2.4.51": ("ISO_10918_1", "JPEG extended", True),
    "1.2.840.10008.1.2.4.81": ("ISO_14495_1", "JPEG-LS near-lossless", True),
    "1.2.840.10008.1.2.4.91": ("ISO_15444_1", "JPEG 2000", False),
    "1.2.840.10008.1.2.4.203": ("ISO_15444_15", "HTJ2K", False),
}


def file_lossy(ds: Any, transfer_syntax: str) -> dict[str, Any] | None:
    """What one file says of lossy compression: {'ratio', 'method', 'name'} or None when lossless."""
    flag = str(ds.get("LossyImageCompression") or "").strip()
    syntax = LOSSY_SYNTAXES.get(transfer_syntax)
    certain = flag == "01" or bool(syntax and syntax[2])
    maybe = bool(syntax) and flag != "00"
    if not (certain or maybe):
        return None
    ratios = _values(ds.get("LossyImageCompressionRatio"))
    methods = [str(m).strip() for m in _values(ds.get("LossyImageCompressionMethod")) if str(m).strip()]
    if not methods and syntax:
        methods = [syntax[0]]
    name = syntax[1] if syntax else "an earlier lossy step"
    return {
        "ratio": [float(r) for r in ratios if _is_number(r)],
        "method": methods,
        "name": name,
        "certain": certain,
    }


def series_lossy(per_file: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One summary for a series: any lossy file makes the series lossy (ratios/methods pooled)."""
    found = [f for f in per_file if f]
    if not found:
        return None
    ratios = sorted({r for f in found for r in f["ratio"]})
    methods = list(dict.fromkeys(m for f in found for m in f["method"]))
    names = list(dict.fromkeys(f["name"] for f in found))
    return {
        "ratio": ratios,
        "method": methods,
        "name": ", ".join(names),
        "certain": any(f["certain"] for f in found),
        "n_files": len(found),
    }


def lossy_warning(lossy: Mapping[str, Any], n_slices: int) -> str:
    """The reader's warning line for a lossy (or possibly lossy) series."""
    ratio = ""
    if lossy.get("ratio"):
        ratio = ", ratio " + "/".join(f"{r:g}:1" for r in lossy["ratio"])
    n_lossy = lossy.get("n_files", n_slices)
    which = "" if n_lossy >= n_slices else f" ({n_lossy} of {n_slices} slices)"
    if lossy.get("certain"):
        return (
            f"lossy compression: the source was compressed with loss ({lossy['name']}{ratio}){which}; "
            "a synthetic image made from it inherits the loss"
        )
    return (
        f"possibly lossy compression: {lossy['name']} may be lossy and the header does not say it was "
        f"kept lossless{which}; a synthetic image made from it would inherit any loss"
    )


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return list(value)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
