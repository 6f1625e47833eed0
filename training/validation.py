"""Validation during training: whole slices through the product's Translator, organ means, body metrics.

The loss alone says little about whether the model removes iodine: a model can lower the loss on
noise and edges while the aorta stays 100 HU too bright. So every validation reports, besides the
loss, the body-mask MAE / SSIM / PSNR and, where the cache has labels, the mean HU inside the
watched organs (aorta, renal cortex, spleen) against the true image, and the MAE inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mfm_engine.ddpm import DDPMSchedule
from mfm_engine.intensity import model_to_hu
from mfm_engine.metrics import body_mask, compare
from mfm_engine.translate import Translator
from training.cache import SliceCache
from training.organs import OrganStats, eroded_mask

_CHUNK = 4


@dataclass
class ValSlices:
    """Whole validation slices in HU: the input and target of the watched direction, and labels."""

    contrast_hu: np.ndarray  # (N, H, W)
    native_hu: np.ndarray
    labels: np.ndarray | None
    names: list[str]


def _pick(labels: np.ndarray | None, values: list[int], n: int, k: int) -> list[int]:
    """Slice indices: each organ's fullest slice first, then the slices with most organ voxels."""
    if labels is None or not values:
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})
    counts = np.stack([[int(eroded_mask(labels[z], v).sum()) for v in values] for z in range(n)])
    chosen: list[int] = []
    for j in range(len(values)):
        z = int(np.argmax(counts[:, j]))
        if counts[z, j] > 0 and z not in chosen:
            chosen.append(z)
    for z in np.argsort(-counts.sum(axis=1), kind="stable"):
        if len(chosen) >= k:
            break
        if int(z) not in chosen:
            chosen.append(int(z))
    return sorted(chosen[:k])


def pick_validation_slices(
    cache: SliceCache, split: str, *, organs: list[str], max_patients: int, per_patient: int
) -> ValSlices | None:
    """Up to ``per_patient`` slices of the first ``max_patients`` patients of ``split`` (None if empty)."""
    patients = cache.split(split)[:max_patients]
    if not patients:
        return None
    values = [v for v in (cache.label_value(o) for o in organs) if v is not None]
    cs, ns, ls, names = [], [], [], []
    all_labels = all(p.has_labels for p in patients)
    sizes = {(p.height, p.width) for p in patients}
    for p in patients:
        if len(sizes) > 1 and (p.height, p.width) != max(sizes):
            continue  # one size per stack; the largest is the product's usual case
        arr = cache.arrays(p.id)
        labels = np.asarray(arr["labels"]) if all_labels else None
        for z in _pick(labels, values, p.n_slices, per_patient):
            cs.append(model_to_hu(np.asarray(arr["contrast"][z], dtype=np.float32)))
            ns.append(model_to_hu(np.asarray(arr["native"][z], dtype=np.float32)))
            if labels is not None:
                ls.append(labels[z])
            names.append(f"{p.id}:{z}")
    return ValSlices(np.stack(cs), np.stack(ns), np.stack(ls) if ls else None, names)


def translate_slices(
    translator: Translator, hu: np.ndarray, *, direction: str, solver: str, steps: int
) -> np.ndarray:
    """(N, H, W) HU → translated (N, H, W) HU, a few slices at a time."""
    out = [
        translator.translate_array(hu[i : i + _CHUNK], direction=direction, solver=solver, steps=steps).hu
        for i in range(0, hu.shape[0], _CHUNK)
    ]
    return np.concatenate(out, axis=0)


def slice_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean over slices of MAE / SSIM / PSNR in the target's body mask (slices without body skipped)."""
    rows = []
    for k in range(target.shape[0]):
        mask = body_mask(target[k])
        if mask.sum() > 64:
            rows.append(compare(pred[k], target[k], mask))
    if not rows:
        return {}
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def flat_organ_metrics(stats: dict[str, dict[str, float]], organs: list[str]) -> dict[str, float]:
    """CSV-friendly organ numbers: <organ>_err_hu (mean HU error), organ_mae_hu and its identity."""
    out: dict[str, float] = {}
    for organ in organs:
        s = stats.get(organ, {})
        if s.get("voxels"):
            out[f"{organ}_err_hu"] = s["mean_error_hu"]
    union = stats.get("organs", {})
    if union.get("voxels"):
        out["organ_mae_hu"] = union["mae_hu"]
        out["identity_organ_mae_hu"] = union["identity_mae_hu"]
    return out


@torch.no_grad()
def run_validation(
    model: torch.nn.Module,
    slices: ValSlices,
    *,
    kind: str,
    direction: str | None,
    solver: str,
    steps: int,
    organs: list[str],
    legend: dict[int, str],
    device: torch.device,
    ddpm: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Translate the validation slices with the model as the product would and measure them."""
    was_training = model.training
    translator = Translator(
        model,
        kind=kind,
        device=device,
        precision="fp32",
        channels_last=False,
        trained_direction=direction,
        ddpm_schedule=DDPMSchedule(**ddpm) if ddpm else None,
    )
    d = direction or "c2n"
    source, target = (
        (slices.contrast_hu, slices.native_hu) if d == "c2n" else (slices.native_hu, slices.contrast_hu)
    )
    try:
        pred = translate_slices(translator, source, direction=d, solver=solver, steps=steps)
    finally:
        model.train(was_training)
    metrics = slice_metrics(pred, target)
    metrics["identity_mae_hu"] = slice_metrics(source, target).get("mae_hu", float("nan"))
    if slices.labels is not None and organs:
        stats = OrganStats(list(organs), legend)
        stats.add(pred, target, source, slices.labels)
        metrics.update(flat_organ_metrics(stats.result(), list(organs)))
    return metrics
