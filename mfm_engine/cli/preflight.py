"""Checks that run before a command loads a model or reads a pixel, so a bad request fails at once.

- Arguments: solver name, step count, batch size.
- Input safety: an output that is the input, lies inside the input, or contains it is refused, with
  or without --overwrite; so is an image output whose JSON sidecar would replace the input's.
- Output: the nearest existing folder must take a new file (tried for real: root ignores
  permission bits, not a read-only mount), and its disk must have room for the estimated output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mfm_engine.errors import MFMError
from mfm_engine.io.image_read import image_suffix
from mfm_engine.io.image_write import sidecar_path
from mfm_engine.solver_names import SOLVER_NAMES

# Room kept free beyond the estimate: a full disk breaks more than this command.
_SPARE_BYTES = 64 << 20
_DICOM_HEADER_BYTES = 8 << 10


def check_solver_request(solver: str, steps: int, batch_size: int | None = None) -> None:
    """Solver known, steps >= 1, batch size >= 1 (when given)."""
    if solver not in SOLVER_NAMES:
        raise MFMError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVER_NAMES)}")
    if steps < 1:
        raise MFMError(f"--steps must be 1 or more, got {steps}")
    if batch_size is not None and batch_size < 1:
        raise MFMError(f"--batch-size must be 1 or more, got {batch_size}")


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_not_input(input_path: Path, output: Path) -> None:
    """Refuse an output that is, lies inside, or contains the input (symlinks resolved)."""
    src, dst = _resolved(input_path), _resolved(output)
    if dst == src:
        raise MFMError(f"{output}: the output is the input itself; refusing to write over the study")
    if src.is_dir() and dst.is_relative_to(src):
        raise MFMError(
            f"{output}: the output lies inside the input folder {input_path}; refusing, since it would "
            "change the study (write it somewhere else)"
        )
    if src.is_relative_to(dst):
        raise MFMError(
            f"{output}: the output contains the input {input_path}; refusing, since writing it could "
            "replace the study"
        )
    # The image writer's own rule for the sidecar name (ct.nii.gz → ct.json).
    if image_suffix(src) and image_suffix(dst) and sidecar_path(src) == (side_out := sidecar_path(dst)):
        raise MFMError(
            f"{output}: its JSON sidecar would be {side_out.name}, the input's own sidecar; "
            "choose another name"
        )


def nearest_existing_folder(path: Path) -> Path:
    """The path itself if it is a folder, else its closest existing ancestor folder."""
    p = _resolved(path)
    while not p.is_dir():
        if p.exists():  # a file where a folder is needed
            raise MFMError(f"{path}: {p} is a file, so the output cannot be written there")
        p = p.parent
    return p


def check_writable(output: Path) -> Path:
    """The existing folder the output will go into, after proving a file can be created there."""
    folder = nearest_existing_folder(output if not image_suffix(output) else output.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=".mfm-write-check-", dir=folder)
    except OSError as exc:
        raise MFMError(f"{output}: cannot write into {folder}: {exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(probe)
    return folder


def estimate_output_bytes(study: Path, fmt: str) -> int:
    """A generous size of a translated study: int16 DICOM slices, or a float32 image at worst."""
    voxels = _voxel_count(study)
    if voxels is None:
        # Unknown layout: compressed inputs grow when written uncompressed; assume four times.
        return 4 * _size_on_disk(study)
    if fmt == "dicom":
        files = _dicom_file_count(study)
        return voxels * 2 + files * _DICOM_HEADER_BYTES
    return voxels * 4


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse when the disk holding ``folder`` has less than ``needed`` bytes (plus a margin) free."""
    free = shutil.disk_usage(folder).free
    if free < needed + _SPARE_BYTES:
        raise MFMError(
            f"{what}: needs about {_mb(needed)} MB, but {folder} has only {_mb(free)} MB free; "
            "free some space or write elsewhere"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f}"


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _dicom_file_count(path: Path) -> int:
    return 1 if path.is_file() else sum(1 for f in path.rglob("*") if f.is_file())


def _voxel_count(study: Path) -> int | None:
    """Voxels in the study from headers only (NIfTI header; DICOM rows × columns × files)."""
    suffix = image_suffix(study)
    if suffix in (".nii", ".nii.gz"):
        import gzip

        from mfm_engine.io.nifti_check import read_layout

        try:
            with (gzip.open if suffix == ".nii.gz" else open)(study, "rb") as f:
                layout = read_layout(f.read(540))
        except OSError:
            return None
        return None if layout is None else layout.data_bytes  # ≥ voxels; a safe over-estimate
    if suffix is not None:
        return None
    from mfm_engine.io.dicom_read import DicomHeader, read_header

    files = [study] if study.is_file() else sorted(f for f in study.rglob("*") if f.is_file())
    for f in files:
        header = read_header(f)
        if isinstance(header, DicomHeader):
            return header.rows * header.cols * max(1, header.n_frames) * len(files)
    return None
