"""Helpers shared by the reader-study tests: a tiny untrained checkpoint and small phantom bundles."""

from __future__ import annotations

import random
from pathlib import Path

from torch_threads import one_torch_thread

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.models.registry import build_model
from mfm_engine.reader_study.design import DesignResult, SynthesisSettings, create_study, phantom_sources

TINY = {"name": "timeresnet", "preset": "tiny"}
# Small phantoms: 6 slices of 64×64 keep a whole bundle to a few seconds on two cores.
PHANTOM_SLICES, PHANTOM_SIZE = 6, 64


def tiny_checkpoint(folder: Path) -> Path:
    """An untrained tiny flow checkpoint (real weights file and sidecar)."""
    return save_checkpoint(
        build_model(TINY), folder / "tiny", model_config=TINY, kind="flow", trained_on="untrained test"
    )


def make_bundle(
    folder: Path,
    checkpoint: Path,
    *,
    mode: str,
    n: int,
    seed: int = 3,
    candidates: int | None = None,
    allow_revisions: bool = False,
    name: str = "bundle",
) -> DesignResult:
    """A study of phantom patients 1..candidates; synthetic natives made by ``checkpoint`` (1 Euler step)."""
    sources = phantom_sources(range(1, (candidates or n) + 1), n_slices=PHANTOM_SLICES, size=PHANTOM_SIZE)
    with one_torch_thread():
        return create_study(
            sources,
            folder / name,
            folder / f"{name}-KEY.json",
            mode=mode,
            n=n,
            seed=seed,
            synthesis=SynthesisSettings(str(checkpoint), "euler", 1, "cpu"),
            allow_revisions=allow_revisions,
            source_description="test phantoms",
        )


def scripted_choice(rng: random.Random, choices: tuple[str, str]) -> tuple[str, int]:
    """A reader who guesses: a random choice and confidence."""
    return rng.choice(choices), rng.randint(1, 5)
