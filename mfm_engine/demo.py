"""The demo study and demo model shipped in assets/, so the app does something real on first start."""

from __future__ import annotations

from pathlib import Path

from mfm_engine.volume import Volume

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_STUDY_DIR = ASSETS / "demo_study"
DEMO_MODEL = ASSETS / "demo_model" / "timeresnet_demo.safetensors"
# The phantom patient the shipped demo study was made from (held out from the demo model's training).
DEMO_SEED = 900
DEMO_SLICES = 48


def demo_study() -> tuple[Volume, Volume]:
    """(contrast, native) of the demo phantom patient: the shipped files, or generated when absent."""
    contrast_file = DEMO_STUDY_DIR / "contrast.nii.gz"
    native_file = DEMO_STUDY_DIR / "native.nii.gz"
    if contrast_file.exists() and native_file.exists():
        from mfm_engine.io.study import read_study

        contrast, native = read_study(contrast_file), read_study(native_file)
        for vol, phase in ((contrast, "arterial"), (native, "native")):
            vol.meta.update(phantom=True, phantom_seed=DEMO_SEED, phase=phase)
            vol.meta["series_description"] = f"PHANTOM {phase} (demo, seed {DEMO_SEED})"
        return contrast, native
    from mfm_engine.phantom import make_phantom_pair

    pair = make_phantom_pair(DEMO_SEED, motion_mm=0.0, n_slices=DEMO_SLICES)
    return pair.contrast, pair.native


def demo_checkpoint() -> Path | None:
    """Path of the shipped demo model's weights, or None when it is not there."""
    return DEMO_MODEL if DEMO_MODEL.exists() and DEMO_MODEL.with_suffix(".json").exists() else None
