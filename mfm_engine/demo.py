"""The demo study and demo model shipped in assets/, so the app does something real on first start.

The demo study is a recipe (assets/demo_study/demo_study.json: a phantom seed held out from the
demo model's training, no motion) rather than image files: the phantom is deterministic per seed,
and its noise does not compress, so the files would only weigh the repository down.
"""

from __future__ import annotations

import json
from pathlib import Path

from mfm_engine.volume import Volume

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_STUDY_RECIPE = ASSETS / "demo_study" / "demo_study.json"
DEMO_MODEL = ASSETS / "demo_model" / "timeresnet_demo.safetensors"
_FALLBACK_RECIPE = {"seed": 900, "motion_mm": 0.0, "n_slices": 48}


def demo_recipe() -> dict:
    """The demo phantom's seed, motion and slice count (and, when the recipe names them, its
    ``acquisition`` and contrast ``timing``; see make_phantom_pair)."""
    if DEMO_STUDY_RECIPE.exists():
        return {**_FALLBACK_RECIPE, **json.loads(DEMO_STUDY_RECIPE.read_text(encoding="utf-8"))}
    return dict(_FALLBACK_RECIPE)


def demo_study() -> tuple[Volume, Volume]:
    """(contrast, native) of the demo phantom patient."""
    from mfm_engine.phantom import make_phantom_pair

    recipe = demo_recipe()
    options = {k: recipe[k] for k in ("acquisition", "timing", "identity_share") if recipe.get(k) is not None}
    pair = make_phantom_pair(
        int(recipe["seed"]), motion_mm=float(recipe["motion_mm"]), n_slices=recipe["n_slices"], **options
    )
    for vol in (pair.contrast, pair.native):
        vol.meta["demo"] = True
    return pair.contrast, pair.native


def demo_checkpoint() -> Path | None:
    """Path of the shipped demo model's weights, or None when it is not there."""
    return DEMO_MODEL if DEMO_MODEL.exists() and DEMO_MODEL.with_suffix(".json").exists() else None
