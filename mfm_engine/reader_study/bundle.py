"""Study bundles and keys: what readers get (volumes + a manifest without truth), what the coordinator keeps.

A bundle is a folder::

    BUNDLE/
      manifest.json          study id, mode, settings, case ids and their volume files (+ SHA-256)
      volumes/<random>.nii   one uncompressed int16 NIfTI per shown volume, under a random name

Every volume goes through one writer (`write_case_volume`): int16, uncompressed (so a file's size
depends only on its grid, never on how well its voxels compress), no description, no sidecar,
SimpleITK's default header (no descrip, aux_file or intent), and one fixed modification time.
The **key** (a separate JSON file, never inside the bundle) says which volume is real and which is
synthetic, which model/solver/steps made it and where each came from; it carries the bundle's
SHA-256 (over the manifest and every volume file) so answers are only ever scored against the
bundle they were given for.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.reader_study.common import (
    CHOICES,
    ReaderStudyError,
    canonical_json,
    check_mode,
    check_reader_id,
    read_json,
    sha256_file,
)
from mfm_engine.volume import Volume

MANIFEST_NAME = "manifest.json"
VOLUMES_DIR = "volumes"
VOLUME_SUFFIX = ".nii"
BUNDLE_FORMAT = "mfm-studio reader-study bundle"
KEY_FORMAT = "mfm-studio reader-study key"
FORMAT_VERSION = 1
# Every file of a bundle gets this modification time (2000-01-01T00:00:00Z), so the order in which
# real and synthetic volumes were written cannot be read back from the file system.
FIXED_MTIME = 946684800
# Sides of a paired case, in screen order; a single-image case has one volume.
SIDES: dict[str, tuple[str, ...]] = {"paired": ("left", "right"), "single": ("image",)}


# -- manifest ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySettings:
    """What every reader's screen starts with and what the session allows; nothing about the truth."""

    window_name: str = "abdomen (Slicer)"
    window_width: float = 350.0
    window_level: float = 40.0
    allow_revisions: bool = False
    hu_clip: tuple[float, float] = (-1000.0, 1000.0)
    order_seed: str = ""  # random per bundle; with a reader id it fixes that reader's case order

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``settings`` object."""
        return {
            "initial_window": {
                "name": self.window_name,
                "width": self.window_width,
                "level": self.window_level,
            },
            "allow_revisions": self.allow_revisions,
            "hu_clip": list(self.hu_clip),
            "order_seed": self.order_seed,
        }

    @classmethod
    def from_json(cls, doc: Any, where: Path) -> StudySettings:
        """Parse and check the manifest's ``settings`` object."""
        try:
            win = doc["initial_window"]
            settings = cls(
                window_name=str(win["name"]),
                window_width=float(win["width"]),
                window_level=float(win["level"]),
                allow_revisions=bool(doc["allow_revisions"]),
                hu_clip=(float(doc["hu_clip"][0]), float(doc["hu_clip"][1])),
                order_seed=str(doc["order_seed"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ReaderStudyError(
                f"{where}: the manifest's settings are incomplete or malformed ({exc})"
            ) from exc
        if not settings.window_width > 0:
            raise ReaderStudyError(f"{where}: the initial window width must be positive")
        if not settings.order_seed:
            raise ReaderStudyError(f"{where}: the manifest has no order seed")
        return settings


@dataclass(frozen=True)
class CaseFile:
    """One volume of a case: its path inside the bundle and its SHA-256."""

    path: str  # relative, '/'-separated, e.g. 'volumes/3fa2c1d0e9b87766.nii'
    sha256: str


@dataclass(frozen=True)
class BundleCase:
    """A case as the reader sees it: an id and its volume(s) by side ('left'/'right' or 'image')."""

    id: str
    files: dict[str, CaseFile]


@dataclass
class Manifest:
    """The bundle's manifest: study id, mode, settings and cases (sorted by id, which is random)."""

    study_id: str
    mode: str
    settings: StudySettings
    cases: list[BundleCase]
    created: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def case_ids(self) -> list[str]:
        """Case ids in manifest order."""
        return [c.id for c in self.cases]

    @property
    def choices(self) -> tuple[str, str]:
        """The two answers a reader may give in this mode."""
        return CHOICES[self.mode]

    def case(self, case_id: str) -> BundleCase:
        """The case with this id (ReaderStudyError when unknown)."""
        for c in self.cases:
            if c.id == case_id:
                return c
        raise ReaderStudyError(f"{self.path or 'manifest'}: no case {case_id!r} in this study")

    def to_json(self) -> dict[str, Any]:
        """The manifest document."""
        return {
            "format": BUNDLE_FORMAT,
            "version": FORMAT_VERSION,
            "study_id": self.study_id,
            "mode": self.mode,
            "created": self.created,
            "settings": self.settings.to_json(),
            "cases": [
                {
                    "id": c.id,
                    "files": {side: {"path": f.path, "sha256": f.sha256} for side, f in c.files.items()},
                }
                for c in self.cases
            ],
        }


def manifest_path(bundle: str | os.PathLike[str]) -> Path:
    """Where a bundle's manifest lives."""
    return Path(bundle) / MANIFEST_NAME


def read_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and check a bundle's manifest (ReaderStudyError naming the file and the problem)."""
    root = Path(bundle)
    if not root.is_dir():
        raise ReaderStudyError(
            f"{root}: not a folder; a reader-study bundle is a folder with {MANIFEST_NAME}"
        )
    path = manifest_path(root)
    doc = read_json(path, "reader-study manifest")
    if doc.get("format") != BUNDLE_FORMAT:
        raise ReaderStudyError(f"{path}: not a reader-study manifest (format {doc.get('format')!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise ReaderStudyError(f"{path}: manifest version {doc.get('version')!r} is not supported")
    mode = doc.get("mode")
    try:
        check_mode(mode)
    except ReaderStudyError as exc:
        raise ReaderStudyError(f"{path}: {exc}") from exc
    settings = StudySettings.from_json(doc.get("settings"), path)
    cases: list[BundleCase] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("cases") or []):
        try:
            cid = str(entry["id"])
            files = {str(s): CaseFile(str(f["path"]), str(f["sha256"])) for s, f in entry["files"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReaderStudyError(f"{path}: case #{i + 1} is malformed ({exc})") from exc
        if cid in seen:
            raise ReaderStudyError(f"{path}: case id {cid!r} appears twice")
        if set(files) != set(SIDES[mode]):
            raise ReaderStudyError(
                f"{path}: case {cid!r} has volumes {sorted(files)}; a {mode} case needs {list(SIDES[mode])}"
            )
        for f in files.values():
            rel = Path(f.path)
            if rel.is_absolute() or ".." in rel.parts:
                raise ReaderStudyError(f"{path}: case {cid!r} points outside the bundle ({f.path})")
        seen.add(cid)
        cases.append(BundleCase(cid, files))
    if not cases:
        raise ReaderStudyError(f"{path}: the manifest lists no cases")
    return Manifest(
        str(doc.get("study_id") or ""), mode, settings, cases, str(doc.get("created") or ""), path
    )


# -- hashing ----------------------------------------------------------------------------------------


def manifest_sha256(bundle: str | os.PathLike[str]) -> str:
    """SHA-256 of the manifest file's bytes."""
    path = manifest_path(bundle)
    if not path.is_file():
        raise ReaderStudyError(f"{path}: reader-study manifest not found")
    return sha256_file(path)


def bundle_sha256(bundle: str | os.PathLike[str], manifest: Manifest | None = None) -> str:
    """SHA-256 over the manifest's bytes and every case volume (path, then bytes; in path order)."""
    root = Path(bundle)
    manifest = manifest or read_manifest(root)
    h = hashlib.sha256()
    h.update(MANIFEST_NAME.encode() + b"\0")
    h.update(manifest_path(root).read_bytes())
    for rel in sorted({f.path for c in manifest.cases for f in c.files.values()}):
        target = root / rel
        if not target.is_file():
            raise ReaderStudyError(f"{target}: a case volume listed in the manifest is missing")
        h.update(b"\0" + rel.encode() + b"\0")
        with open(target, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def verify_bundle(bundle: str | os.PathLike[str], manifest: Manifest | None = None) -> None:
    """Check that every case volume exists and matches its SHA-256 in the manifest."""
    root = Path(bundle)
    manifest = manifest or read_manifest(root)
    for case in manifest.cases:
        for side, f in case.files.items():
            target = root / f.path
            if not target.is_file():
                raise ReaderStudyError(f"{target}: volume of case {case.id} ({side}) is missing")
            if sha256_file(target) != f.sha256:
                raise ReaderStudyError(
                    f"{target}: volume of case {case.id} ({side}) was changed after the study was made "
                    "(its SHA-256 does not match the manifest)"
                )


# -- case volumes -----------------------------------------------------------------------------------


def write_case_volume(
    hu_int16: np.ndarray,
    spacing: tuple[float, float, float],
    direction: np.ndarray,
    path: Path,
) -> str:
    """Write one shown volume (int16 HU, (z, y, x)) as a bare uncompressed NIfTI; returns its SHA-256.

    The origin is put at the grid's centre, so positions say nothing about the source scan.
    """
    import SimpleITK as sitk

    if hu_int16.dtype != np.int16 or hu_int16.ndim != 3:
        raise ReaderStudyError(
            f"{path}: case volumes must be 3-D int16 arrays, got {hu_int16.dtype} {hu_int16.shape}"
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(hu_int16))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=np.float64).reshape(-1)))
    image.SetOrigin(tuple(float(v) for v in centred_origin(hu_int16.shape, spacing, direction)))
    try:
        sitk.WriteImage(image, str(path), useCompression=False)
    except RuntimeError as exc:
        raise ReaderStudyError(
            f"{path}: could not write the case volume: {str(exc).strip().splitlines()[-1]}"
        ) from exc
    os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    return sha256_file(path)


def centred_origin(
    shape_zyx: tuple[int, ...], spacing: tuple[float, float, float], direction: np.ndarray
) -> np.ndarray:
    """The origin (LPS mm) that puts the centre of a (z, y, x) grid at (0, 0, 0), rounded to 1 µm."""
    half = (np.asarray(shape_zyx[::-1], dtype=np.float64) - 1.0) / 2.0 * np.asarray(spacing, dtype=np.float64)
    origin = -(np.asarray(direction, dtype=np.float64).reshape(3, 3) @ half)
    return np.round(origin, 3) + 0.0  # + 0.0 turns -0.0 into 0.0


def load_case_volume(bundle: str | os.PathLike[str], file: CaseFile, verify: bool = True) -> Volume:
    """Read one case volume (checking its SHA-256) as a Volume with no metadata at all."""
    import SimpleITK as sitk

    target = Path(bundle) / file.path
    if not target.is_file():
        raise ReaderStudyError(f"{target}: case volume missing from the bundle")
    if verify and sha256_file(target) != file.sha256:
        raise ReaderStudyError(
            f"{target}: this case volume was changed after the study was made (SHA-256 mismatch)"
        )
    try:
        image = sitk.ReadImage(str(target))
    except RuntimeError as exc:
        raise ReaderStudyError(
            f"{target}: cannot read the case volume: {str(exc).strip().splitlines()[-1]}"
        ) from exc
    if image.GetDimension() != 3:
        raise ReaderStudyError(f"{target}: a case volume must be 3-D, this one is {image.GetDimension()}-D")
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    return Volume(
        hu, image.GetSpacing(), image.GetOrigin(), np.asarray(image.GetDirection()).reshape(3, 3), {}
    )


# -- reader order -----------------------------------------------------------------------------------


def reader_order(manifest: Manifest, reader_id: str) -> list[str]:
    """This reader's case order: the case ids shuffled with the bundle's order seed and the reader id."""
    rid = check_reader_id(reader_id)
    digest = hashlib.sha256(f"{manifest.settings.order_seed}\0{rid}".encode()).digest()
    order = sorted(manifest.case_ids)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


# -- key --------------------------------------------------------------------------------------------


@dataclass
class KeyCase:
    """The truth of one case: which side is synthetic (paired) or what the image is (single); provenance."""

    id: str
    truth: dict[str, str]  # side -> 'real' | 'synthetic'
    sources: dict[str, str] = field(default_factory=dict)  # side -> where the volume came from
    patient: str = ""  # the source study's label (one patient per case)
    provenance: dict[str, Any] = field(default_factory=dict)  # how the synthetic volume was made

    @property
    def synthetic_side(self) -> str | None:
        """The side holding the synthetic volume ('left'/'right'), or None for a real single image."""
        sides = [s for s, t in self.truth.items() if t == "synthetic"]
        return sides[0] if sides else None

    def correct_answer(self, mode: str) -> str:
        """What a reader should have answered: the synthetic side (paired) or 'real'/'synthetic' (single)."""
        if mode == "paired":
            return self.synthetic_side or ""
        return self.truth["image"]


@dataclass
class Key:
    """The coordinator's key to a bundle (never given to readers)."""

    study_id: str
    mode: str
    manifest_sha256: str
    bundle_sha256: str
    cases: dict[str, KeyCase]
    design: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The key document."""
        return {
            "format": KEY_FORMAT,
            "version": FORMAT_VERSION,
            "warning": "The truth of a blinded reader study: keep this file away from the readers.",
            "study_id": self.study_id,
            "mode": self.mode,
            "manifest_sha256": self.manifest_sha256,
            "bundle_sha256": self.bundle_sha256,
            "design": self.design,
            "cases": {
                cid: {
                    "truth": c.truth,
                    "sources": c.sources,
                    "patient": c.patient,
                    "provenance": c.provenance,
                }
                for cid, c in sorted(self.cases.items())
            },
        }


def write_key(key: Key, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the key JSON (atomically); refuses to replace an existing key unless ``overwrite``."""
    from mfm_engine.atomic import atomic_write_text

    target = Path(path)
    if target.exists() and not overwrite:
        raise ReaderStudyError(f"{target}: a key file already exists; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, canonical_json(key.to_json()))
    return target


def read_key(path: str | os.PathLike[str]) -> Key:
    """Read and check a key file (ReaderStudyError naming the file and the problem)."""
    target = Path(path)
    doc = read_json(target, "reader-study key")
    if doc.get("format") != KEY_FORMAT:
        raise ReaderStudyError(f"{target}: not a reader-study key (format {doc.get('format')!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise ReaderStudyError(f"{target}: key version {doc.get('version')!r} is not supported")
    try:
        mode = check_mode(doc["mode"])
        cases = {}
        for cid, c in doc["cases"].items():
            truth = {str(s): str(t) for s, t in c["truth"].items()}
            if set(truth) != set(SIDES[mode]) or not set(truth.values()) <= {"real", "synthetic"}:
                raise ReaderStudyError(f"{target}: case {cid!r} has a malformed truth {truth}")
            if mode == "paired" and sorted(truth.values()) != ["real", "synthetic"]:
                raise ReaderStudyError(
                    f"{target}: paired case {cid!r} must have one real and one synthetic side"
                )
            cases[str(cid)] = KeyCase(
                str(cid),
                truth,
                dict(c.get("sources") or {}),
                str(c.get("patient") or ""),
                dict(c.get("provenance") or {}),
            )
        return Key(
            str(doc["study_id"]),
            mode,
            str(doc["manifest_sha256"]),
            str(doc["bundle_sha256"]),
            cases,
            dict(doc.get("design") or {}),
            target,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReaderStudyError(f"{target}: the key is incomplete or malformed (missing {exc})") from exc


def check_key_matches(bundle: str | os.PathLike[str], key: Key, manifest: Manifest | None = None) -> Manifest:
    """Refuse a key that was not made for this bundle (study id, hashes, case ids); returns the manifest."""
    root = Path(bundle)
    manifest = manifest or read_manifest(root)
    where = key.path or "key"
    if key.study_id != manifest.study_id:
        raise ReaderStudyError(
            f"{where}: this key belongs to study {key.study_id!r}, "
            f"but the bundle {root} is study {manifest.study_id!r}"
        )
    if key.mode != manifest.mode:
        raise ReaderStudyError(f"{where}: key mode {key.mode!r} differs from the bundle's {manifest.mode!r}")
    if key.manifest_sha256 != manifest_sha256(root):
        raise ReaderStudyError(
            f"{where}: the bundle's manifest {manifest_path(root)} was changed since the key was made"
        )
    actual = bundle_sha256(root, manifest)
    if key.bundle_sha256 != actual:
        raise ReaderStudyError(
            f"{where}: hash mismatch: the key was made for bundle {key.bundle_sha256[:12]}…, "
            f"but {root} hashes to {actual[:12]}… (a volume was changed, added or replaced)"
        )
    if set(key.cases) != set(manifest.case_ids):
        missing = sorted(set(manifest.case_ids) - set(key.cases))
        extra = sorted(set(key.cases) - set(manifest.case_ids))
        raise ReaderStudyError(
            f"{where}: key and bundle list different cases (missing {missing}, unknown {extra})"
        )
    return manifest
