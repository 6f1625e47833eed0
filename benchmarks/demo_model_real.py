"""The shipped demo model on the real series in ../shared/data: the issue-14 checks as a table, and pictures.

    .venv/bin/python benchmarks/demo_model_real.py [--data ../shared/data] [--pictures docs/real]

Per series and direction: benchmarks/fidelity_real.py's figures (padding voxels changed, share moved
the wrong way, median change per HU band of the input), and the aorta ROI's
mean before and after (found from the input as tests/real_rois.py does). With --pictures, one PNG
per series: input | synthetic | change, abdomen window W400/L40, change on ±200 HU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fidelity_real import changes  # noqa: E402  (the same per-band figures, one definition)
from real_rois import vessel_roi  # noqa: E402

from mfm_engine.demo import demo_checkpoint  # noqa: E402
from mfm_engine.fidelity import InPlaneOrientation  # noqa: E402
from mfm_engine.io.study import read_study  # noqa: E402
from mfm_engine.translate import Translator  # noqa: E402

# (label, path under the data folder, direction, aorta ROI: (slices, seed row/col, search, radius, HU range))
SERIES = [
    ("portal-venous J2K", "totalseg_portalvenous_abdomen_dicom_j2k/example_ct_dicom", "c2n",
     (None, (296, 264), 8, 5, (110, 250))),
    ("dcmqi liver (unenhanced)", "dcmqi_liver_ct_3slice", "c2n", None),
    ("WG-04 CT1 (−3024 padding)", "wg04_ct_transfer_syntaxes/CT1_UNC", "c2n", None),
    ("WG-04 CT2", "wg04_ct_transfer_syntaxes/CT2_UNC", "c2n", None),
    ("native NIfTI 3 mm", "totalseg_native_abdomen_nifti/example_ct.nii.gz", "n2c",
     (range(84, 105), (50, 54), 4, 1.5, (20, 70))),
]  # fmt: skip


def window(hu: np.ndarray, level: float = 40, width: float = 400) -> np.ndarray:
    return (np.clip((hu - (level - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def change_map(d: np.ndarray, limit: float = 200) -> np.ndarray:
    """Blue (lower) to white to red (higher), like the viewer's difference maps."""
    t = np.clip(d / limit, -1, 1)
    rgb = np.ones(d.shape + (3,))
    rgb[..., 0] -= np.clip(-t, 0, 1)
    rgb[..., 1] -= np.abs(t)
    rgb[..., 2] -= np.clip(t, 0, 1)
    return (rgb * 255).astype(np.uint8)


def picture(path: Path, before: np.ndarray, after: np.ndarray, k: int, aspect: float) -> None:
    from PIL import Image

    grey = [np.repeat(window(a[k])[..., None], 3, axis=2) for a in (before, after)]
    strip = np.concatenate([grey[0], grey[1], change_map(after[k] - before[k])], axis=1)
    image = Image.fromarray(strip)
    scale = 512 / before.shape[2]
    image = image.resize((round(strip.shape[1] * scale), round(strip.shape[0] * scale * aspect)))
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=22)
    third = image.width // 3
    for x, text, colour in (
        (0, "input (real)", "white"),
        (third, "SYNTHETIC", (255, 200, 0)),
        (2 * third, "SYNTHETIC - input", "black"),
    ):
        draw.text((x + 8, 6), text, fill=colour, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> None:
    """Translate each series present and print the table (markdown)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--pictures", default=None, help="folder for one PNG per series")
    args = ap.parse_args()
    translator = Translator.from_checkpoint(args.model or demo_checkpoint(), device="cpu")
    columns = ("padding changed", "wrong way > 20 HU", "air", "fat", "soft", "bone")
    print("| series | direction | " + " | ".join(columns) + " | aorta before → after |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for label, rel, direction, roi in SERIES:
        path = Path(args.data) / rel
        if not path.exists():
            continue
        volume = read_study(path)
        after = translator.translate_volume(volume, direction=direction).hu
        before = volume.hu
        row = changes(before, after, direction)
        cells = [row[c] for c in columns]
        aorta = "–"
        if roi is not None:
            slices, seed, search, radius, hu_range = roi
            slices = slices or range(volume.shape[0])
            mask = vessel_roi(before, slices, seed, search=search, radius=radius, hu_range=hu_range)
            aorta = f"{before[mask].mean():.0f} → {after[mask].mean():.0f} HU"
        print(f"| {label} | {direction} | " + " | ".join(cells) + f" | {aorta} |")
        if args.pictures:
            k = (slices.start + slices.stop) // 2 if roi is not None else volume.shape[0] // 2
            aspect = volume.spacing[1] / volume.spacing[0]
            name = rel.split("/")[-1].split(".")[0].lower()
            # Radiological view (anterior up, patient's right on the left): the training orientation.
            turn = InPlaneOrientation.from_direction(volume.direction).to_model
            picture(Path(args.pictures) / f"{name}_{direction}.png", turn(before), turn(after), k, aspect)


if __name__ == "__main__":
    main()
