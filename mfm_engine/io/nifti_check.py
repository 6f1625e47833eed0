"""Check a NIfTI file's voxel data against its header: complete, and (for floats) free of NaN/inf.

Both checks read the file itself because ITK does not: its NIfTI reader fills a truncated file's
missing voxels without a word, and turns stored NaN/inf into 0.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfm_engine.errors import StudyReadError

# NIfTI datatype codes of real floating-point voxels: the only ones that can hold NaN.
_FLOAT_TYPES = {16: "f4", 64: "f8"}
_CHUNK_BYTES = 1 << 24


@dataclass(frozen=True)
class NiftiLayout:
    """Where a NIfTI file's voxels are and how many bytes they take."""

    offset: int
    data_bytes: int
    float_code: str | None  # numpy code with byte order for float data, else None


def read_layout(head: bytes) -> NiftiLayout | None:
    """The layout from the first bytes of a NIfTI-1/2 header, or None when it is not one."""
    if len(head) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr in (348, 540):
            break
    else:
        return None
    if sizeof_hdr == 348:
        ndim, *dims = struct.unpack(endian + "8h", head[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
        offset = int(struct.unpack(endian + "f", head[108:112])[0])
    else:
        if len(head) < 540:
            return None
        datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
        ndim, *dims = struct.unpack(endian + "8q", head[16:80])
        (offset,) = struct.unpack(endian + "q", head[168:176])
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    n_voxels = int(np.prod([max(1, int(d)) for d in dims[:ndim]], dtype=np.int64))
    code = _FLOAT_TYPES.get(datatype)
    return NiftiLayout(
        offset=max(int(offset), sizeof_hdr),
        data_bytes=n_voxels * bitpix // 8,
        float_code=endian + code if code else None,
    )


def check_nifti(path: str | os.PathLike[str], *, count_nonfinite: bool = True) -> int:
    """Count NaN/inf voxels (0 for integer data); raise StudyReadError for a truncated or corrupt file.

    With ``count_nonfinite=False`` only completeness is checked, which costs a file size or gzip
    trailer look-up rather than a pass over the data (unless the trailer disagrees).
    """
    path = Path(path)
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            layout = read_layout(f.read(540))
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"the header cannot be read ({exc})") from exc
    if layout is None:
        return 0  # not a NIfTI header we know; SimpleITK has its own say
    expected = layout.offset + layout.data_bytes
    if not gz:
        size = path.stat().st_size
        if size < expected:
            raise _corrupt(path, f"the header promises {expected} bytes, the file holds {size}")
        if layout.float_code is None or not count_nonfinite:
            return 0
    elif (layout.float_code is None or not count_nonfinite) and _gzip_size_matches(path, expected):
        # gzip's trailer records the uncompressed size: a cheap completeness check.
        return 0
    return _stream_voxels(path, gz, layout, expected)


def _gzip_size_matches(path: Path, expected: int) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 4:
            return False
        f.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", f.read(4))
    return isize == expected % (1 << 32)


def _stream_voxels(path: Path, gz: bool, layout: NiftiLayout, expected: int) -> int:
    """Read the voxel data once, in chunks: count NaN/inf for floats, and check every byte is there."""
    dtype = np.dtype(layout.float_code) if layout.float_code else None
    bad = 0
    got = 0
    remaining = layout.data_bytes
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            f.seek(layout.offset)
            while remaining > 0:
                buf = f.read(min(_CHUNK_BYTES, remaining))
                if not buf:
                    break
                got += len(buf)
                remaining -= len(buf)
                if dtype is not None:
                    usable = len(buf) - len(buf) % dtype.itemsize
                    chunk = np.frombuffer(buf[:usable], dtype=dtype)
                    bad += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"the compressed data ends early or is damaged ({exc})") from exc
    if remaining > 0:
        raise _corrupt(path, f"the header promises {expected} bytes, the file holds {layout.offset + got}")
    return bad


def _corrupt(path: Path, why: str) -> StudyReadError:
    return StudyReadError(f"{path}: truncated or corrupt file: {why}")
