"""The shipped demo model on real CT (../shared/data): what iodine cannot change stays, what it did goes.

Real series have no ground truth; these are the checks a radiologist makes at a glance (issue 14):
- padding outside the scan circle identical to the input;
- median change ≤ 5 HU in air (−1100…−900) and fat (−150…−50) and ≤ 10 HU in bone (> 500);
- contrast → native on the portal-venous J2K series brings the aorta to unenhanced blood (25–60 HU);
- contrast → native on the dcmqi liver series, unenhanced already, leaves soft tissue (0…100 HU)
  within 5 HU (median): no iodine removed where there is none;
- native → contrast on the native NIfTI raises the aorta by at least 100 HU.
The figures are in docs/demo-model-eval.md (`benchmarks/demo_model_real.py` prints them).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_subfolder
from real_rois import vessel_roi

from mfm_engine.io.study import read_study
from mfm_engine.volume import Volume

pytestmark = [pytest.mark.slow]

BANDS = {"air": ((-1100, -900), 5.0), "fat": ((-150, -50), 5.0), "bone": ((500, 1e9), 10.0)}
PADDING_MAX_HU = -1400


@pytest.fixture(scope="module")
def translator():
    from mfm_engine.demo import demo_checkpoint
    from mfm_engine.translate import Translator

    path = demo_checkpoint()
    if path is None:
        pytest.skip("the demo model is not installed (assets/demo_model)")
    return Translator.from_checkpoint(path, device="cpu")


def translate(translator, volume: Volume, direction: str) -> np.ndarray:
    return translator.translate_volume(volume, direction=direction, solver="euler", steps=1).hu


def assert_physics_kept(before: np.ndarray, after: np.ndarray) -> None:
    change = after - before
    padding = before <= PADDING_MAX_HU
    assert np.array_equal(after[padding], before[padding])
    for name, ((lo, hi), limit) in BANDS.items():
        band = (before >= lo) & (before <= hi)
        if band.sum() > 100:
            assert abs(float(np.median(change[band]))) <= limit, name


@pytest.mark.parametrize(
    "study",
    [
        "totalseg_portalvenous_abdomen_dicom_j2k/example_ct_dicom",
        "dcmqi_liver_ct_3slice",
        "wg04_ct_transfer_syntaxes/CT1_UNC",
        "wg04_ct_transfer_syntaxes/CT2_UNC",
    ],
)
def test_contrast_to_native_keeps_padding_air_fat_and_bone(translator, study: str) -> None:
    volume = read_study(shared_subfolder(study.split("/")[0]).parent / study)
    assert_physics_kept(volume.hu, translate(translator, volume, "c2n"))


def test_portal_venous_aorta_becomes_unenhanced_blood(translator) -> None:
    volume = read_study(shared_subfolder("totalseg_portalvenous_abdomen_dicom_j2k") / "example_ct_dicom")
    aorta = vessel_roi(volume.hu, range(volume.shape[0]), (296, 264), search=8, radius=5, hu_range=(110, 250))
    assert aorta.any(axis=(1, 2)).sum() >= 15  # found on most slices
    assert 130 <= volume.hu[aorta].mean() <= 200  # the input's portal-venous aorta
    synthetic = translate(translator, volume, "c2n")
    assert 25 <= float(synthetic[aorta].mean()) <= 60


@pytest.mark.xfail(
    strict=True,
    reason="known, issue 14 open: the retrained model lowers the unenhanced dcmqi soft tissue by a median "
    "6 HU (limit 5; the previous model 12)",
)
def test_unenhanced_series_keeps_its_soft_tissue(translator) -> None:
    volume = read_study(shared_subfolder("dcmqi_liver_ct_3slice"))
    synthetic = translate(translator, volume, "c2n")
    soft = (volume.hu >= 0) & (volume.hu <= 100)
    assert abs(float(np.median(synthetic[soft] - volume.hu[soft]))) <= 5


def test_native_to_contrast_enhances_the_aorta_and_keeps_the_rest(translator) -> None:
    volume = read_study(shared_subfolder("totalseg_native_abdomen_nifti") / "example_ct.nii.gz")
    aorta = vessel_roi(volume.hu, range(84, 105), (50, 54), search=4, radius=1.5, hu_range=(20, 70))
    assert aorta.any(axis=(1, 2)).sum() >= 15
    synthetic = translate(translator, volume, "n2c")
    assert float(synthetic[aorta].mean() - volume.hu[aorta].mean()) >= 100
    assert_physics_kept(volume.hu, synthetic)
