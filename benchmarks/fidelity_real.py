"""What a translation changes on real CT, with pass-through and resampling on and off (prints a table).

    .venv/bin/python benchmarks/fidelity_real.py [--data ../shared/data] [--model CKPT]

Per series and setting: voxels in the scanner padding (≤ −1400 HU) that changed, and the median
change (synthetic − input, HU) in air (−1100…−900), fat (−150…−50), soft tissue (0…100) and bone
(> 500) of the input, and the share of in-range voxels moved the wrong way (c2n up, n2c down)
by more than 20 HU. Real series have no ground truth; this only shows what the model touches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mfm_engine.demo import demo_checkpoint
from mfm_engine.io.study import read_study
from mfm_engine.translate import Translator

BANDS = {"air": (-1100, -900), "fat": (-150, -50), "soft": (0, 100), "bone": (500, 1e9)}
PADDING_MAX_HU = -1400

SERIES = [
    ("dcmqi liver (3 slices)", "dcmqi_liver_ct_3slice", "c2n"),
    ("WG-04 CT1 (padding −3024)", "wg04_ct_transfer_syntaxes/CT1_UNC", "c2n"),
    ("portal-venous J2K", "totalseg_portalvenous_abdomen_dicom_j2k/example_ct_dicom", "c2n"),
    ("native NIfTI 3 mm (30 sl.)", "totalseg_native_abdomen_nifti/example_ct_sm.nii.gz", "n2c"),
]


def changes(inp: np.ndarray, out: np.ndarray, direction: str) -> dict[str, str]:
    """Padding voxels changed, median change per HU band of the input, share moved the wrong way."""
    d = out - inp
    pad = inp <= PADDING_MAX_HU
    row = {"padding changed": f"{int((d[pad] != 0).sum())}/{int(pad.sum())}"}
    inside = (inp > -1000) & (inp < 1000)
    wrong = (d if direction == "c2n" else -d)[inside] > 20
    row["wrong way > 20 HU"] = f"{100 * wrong.mean():.2f} %"
    for name, (lo, hi) in BANDS.items():
        m = (inp >= lo) & (inp <= hi)
        row[name] = f"{np.median(d[m]):+.1f}" if m.any() else "–"
    return row


def main() -> None:
    """Translate each real series present under --data and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    ckpt = args.model or demo_checkpoint()
    settings = [
        ("all on (default)", {}),
        ("no wrong-way cap", {"max_wrong_way_hu": None}),
        ("no resampling", {"resample": False}),
        ("none (earlier engine)", {"resample": False, "passthrough": False, "max_wrong_way_hu": None}),
    ]
    translators = {
        name: Translator.from_checkpoint(ckpt, device="cpu", precision="fp32", **opts)
        for name, opts in settings
    }
    cols = ["padding changed", *BANDS, "wrong way > 20 HU"]
    print(f"model {ckpt}, Euler × 1")
    print("| series | spacing mm | direction | setting | " + " | ".join(cols) + " |")
    print("|" + "---|" * (4 + len(cols)))
    for label, rel, direction in SERIES:
        path = Path(args.data) / rel
        if not path.exists():
            print(f"| {label} | absent | | | " + " | ".join("" for _ in cols) + " |")
            continue
        vol = read_study(path)
        for name, tr in translators.items():
            out = tr.translate_volume(vol, direction=direction)
            row = changes(vol.hu, out.hu, direction)
            sp = f"{vol.spacing[0]:.2f}"
            print(f"| {label} | {sp} | {direction} | {name} | " + " | ".join(row[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
