"""Phantom training data: seeded phantom patients as study files + manifest, or straight into a cache.

Patients are seeds ``seed0 .. seed0+N-1``; splits go by patient in seed order (the first ones
train, then test, then holdout), so a split never shares a patient with another. Phantom data is
a procedural stand-in for patients, and every artefact made from it says so.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mfm_engine.atomic import atomic_write_text
from mfm_engine.io.image_write import write_image
from mfm_engine.io.write import write_study
from mfm_engine.phantom import LEGEND, PhantomPair, make_phantom_pair
from training.cache import CacheWriter
from training.errors import ConfigError
from training.pairs import split_counts
from training.registration import TRANSFORMS, register_pair


@dataclass(frozen=True)
class PhantomPlan:
    """Which phantom patients, how big, with what motion, in which split."""

    patients: int = 40
    seed0: int = 1000
    slices: int = 30
    size: int = 512
    motion_mm: float = 0.0
    splits: tuple[int, int, int] | None = None
    acquisition: str = "varied"
    identity_share: float | None = None

    def counts(self) -> tuple[int, int, int]:
        """Patients per split (train, test, holdout)."""
        if self.splits is not None:
            if len(self.splits) != 3 or sum(self.splits) != self.patients:
                raise ConfigError(
                    f"phantom splits {self.splits} must be three counts adding up to {self.patients}"
                )
            return tuple(int(c) for c in self.splits)  # type: ignore[return-value]
        return split_counts(self.patients, (0.8, 0.1, 0.1))

    def assignments(self) -> list[tuple[int, str]]:
        """(seed, split) for every patient, in seed order."""
        n_train, n_test, _ = self.counts()
        out = []
        for i in range(self.patients):
            split = "train" if i < n_train else ("test" if i < n_train + n_test else "holdout")
            out.append((self.seed0 + i, split))
        return out

    def settings(self) -> dict:
        """JSON form stored in the cache, so a cache is never silently reused for another plan."""
        return {
            "patients": self.patients,
            "seed0": self.seed0,
            "slices": self.slices,
            "size": self.size,
            "motion_mm": float(self.motion_mm),
            "splits": list(self.counts()),
            "acquisition": self.acquisition,
            "identity_share": self.identity_share,
        }

    def description(self) -> str:
        """The training-data text for checkpoints (what exactly the model saw)."""
        groups = {}
        for seed, split in self.assignments():
            groups.setdefault(split, []).append(seed)
        parts = [f"{s} seeds {v[0]}–{v[-1]}" for s, v in groups.items()]
        return (
            f"procedural phantom pairs from mfm_engine.phantom (a stand-in, not patient data): "
            f"{self.patients} patients ({', '.join(parts)}), {self.slices} slices each at "
            f"{self.size}×{self.size}, motion {self.motion_mm:g} mm, {self.acquisition} acquisition"
            + (
                f" (pixel spacing 0.6–1.0 mm, scan circle padded with -1024/-2000/-3024 HU, kernel noise "
                f"5–25 HU, timing early arterial to portal venous, identity share "
                f"{0.1 if self.identity_share is None else self.identity_share:g})"
                if self.acquisition == "varied"
                else ""
            )
        )

    def make_pair(self, seed: int) -> PhantomPair:
        """One patient of the plan."""
        return make_phantom_pair(
            seed,
            motion_mm=self.motion_mm,
            n_slices=self.slices,
            size=self.size,
            acquisition=self.acquisition,
            identity_share=self.identity_share,
        )


def patient_id(seed: int) -> str:
    """The cache / folder name of a phantom patient."""
    return f"phantom-{seed:05d}"


def phantom_to_cache(
    plan: PhantomPlan, out: str | os.PathLike[str], *, registration: str = "none", progress: bool = True
) -> Path:
    """Generate the plan's patients straight into a slice cache (labels included); returns index.json."""
    if registration not in TRANSFORMS:
        raise ConfigError(f"unknown registration {registration!r}; use one of {', '.join(TRANSFORMS)}")
    writer = CacheWriter(out, {"registration": registration, "phantom": plan.settings()})
    entries = []
    lines = []
    for seed, split in tqdm(
        plan.assignments(), desc="phantom", unit="patient", file=sys.stderr, disable=not progress
    ):
        pid = patient_id(seed)
        done = writer.finished(pid)
        if done is not None and done.split == split:
            entries.append(done)
            lines.append(f"{pid}: already in the cache, skipped [{split}]")
            continue
        pair = plan.make_pair(seed)
        result = register_pair(pair.contrast, pair.native, transform=registration, label=pid)
        info = {
            "phantom_seed": seed,
            "motion_mm": plan.motion_mm,
            "registration": registration,
            "mae_before_hu": round(result.mae_before_hu, 3),
            "mae_after_hu": round(result.mae_after_hu, 3),
            "phantom_hu": {k: list(v) for k, v in pair.hu_table.items()},
        }
        params = pair.native.meta["phantom_params"]
        # What the scanner varied; padding_label marks the scan-circle padding in labels.npy (the
        # arrays there hold it clipped to the model range, -1 in both series).
        for key in (
            "acquisition", "pixel_mm", "padding_hu", "padding_label", "noise_hu", "nps_peak_per_mm",
            "timing", "contrast_phase", "identity", "arms",
        ):  # fmt: skip
            info[key] = params[key]
        entries.append(
            writer.write_patient(
                pid,
                split,
                result.registered.hu,
                pair.native.hu,
                pair.labels.hu.astype("uint8"),
                spacing=list(pair.native.spacing),
                info=info,
            )
        )
        lines.append(
            f"{pid}: phantom seed {seed}, body MAE {result.mae_before_hu:.1f} → "
            f"{result.mae_after_hu:.1f} HU [{split}]"
        )
    atomic_write_text(Path(out) / "prepare_report.txt", "\n".join(lines) + "\n")
    return writer.finish(entries, legend=dict(LEGEND), description=plan.description())


def phantom_to_files(
    plan: PhantomPlan, out: str | os.PathLike[str], *, fmt: str = "nifti", progress: bool = True
) -> Path:
    """Write OUT/<id>/{contrast,native} (.nii.gz or DICOM folders) + labels.nii.gz; returns manifest.csv."""
    if fmt not in ("nifti", "dicom"):
        raise ConfigError(f"--format must be nifti or dicom, got {fmt!r}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed, split in tqdm(
        plan.assignments(), desc="phantom", unit="patient", file=sys.stderr, disable=not progress
    ):
        pid = patient_id(seed)
        folder = root / pid
        names = ("contrast.nii.gz", "native.nii.gz") if fmt == "nifti" else ("contrast", "native")
        labels_name = "labels.nii.gz"
        # The label map is written last, so its presence means the patient is complete.
        if not (folder / labels_name).exists():
            pair = plan.make_pair(seed)
            for name, vol in zip(names, (pair.contrast, pair.native), strict=True):
                if fmt == "nifti":
                    write_image(vol, folder / name, overwrite=True)
                else:
                    write_study(vol, folder / name, format="dicom", overwrite=True)
            write_image(pair.labels, folder / labels_name, overwrite=True, dtype="int16")
        rows.append(
            {
                "patient": pid,
                "contrast": f"{pid}/{names[0]}",
                "native": f"{pid}/{names[1]}",
                "split": split,
                "labels": f"{pid}/{labels_name}",
            }
        )
    manifest = root / "manifest.csv"
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["patient", "contrast", "native", "split", "labels"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, manifest)
    atomic_write_text(root / "README.txt", plan.description() + "\n")
    return manifest
