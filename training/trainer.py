"""``fit``: train a flow, regression or DDPM model from the slice cache, on CPU, one GPU or many (torchrun).

Losses (x0 = native, x1 = contrast, model scale):

- ``flow``: t ~ U[0, 1], x_t = (1 − t)·x0 + t·x1, MSE(f(x_t, t), x1 − x0);
- ``regression``: L1(f(source, 0), target), source/target by ``direction``;
- ``ddpm``: ε-prediction, MSE(f(√ᾱ·x + √(1−ᾱ)·ε, τ/T, cond), ε), x the target image and cond the
  other phase, τ uniform over the T timesteps of the linear β schedule.

Everything random in step s (times, noise, dropout, augmentation) is seeded from (seed, s, rank),
so a run stopped after any saved step and resumed reproduces the uninterrupted run exactly. Rank 0
validates, checkpoints and logs (CSV, TensorBoard when installed); every rank keeps the same
weights (DistributedDataParallel), which the run checks at the end by hashing them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mfm_engine.checkpoint import load_checkpoint, save_checkpoint
from mfm_engine.ddpm import DDPMSchedule
from mfm_engine.device import pick_device
from mfm_engine.intensity import HU_MAX, HU_MIN
from mfm_engine.models import build_model, count_parameters, resolve_model_config
from training.cache import SliceCache, atomic_write_json
from training.config import TrainConfig
from training.data import PairSliceDataset, StreamBatchSampler, collate, derive_seed
from training.errors import ConfigError, ResumeError, TrainingError
from training.state import find_state, load_train_state, read_state_meta, save_train_state
from training.validation import pick_validation_slices, run_validation

INTENDED_USE = "demonstration and research only; not for clinical use"


@dataclass
class FitResult:
    """Where the run's artefacts are and how far it got."""

    run_dir: Path
    step: int
    total_steps: int
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    best_metric: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


# -- small pieces ---------------------------------------------------------------------------------


def learning_rate(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """LR at a step: linear warm-up to optim.lr, then constant or cosine down to optim.min_lr."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "cosine":
        span = max(1, total_steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return o.lr


def training_loss(
    kind: str,
    net: nn.Module,
    native: torch.Tensor,
    contrast: torch.Tensor,
    gen: torch.Generator,
    *,
    direction: str | None = None,
    schedule: DDPMSchedule | None = None,
    endpoint_fraction: float = 0.0,
) -> torch.Tensor:
    """The kind's loss on a batch (B, 1, H, W) of native (x0) and contrast (x1) in model scale.

    ``endpoint_fraction`` (flow only): that share of the samples, on average, get t = 0 or t = 1
    (half each) instead of t ~ U[0, 1].
    """
    b = native.shape[0]
    dev = native.device
    if kind == "flow":
        t = torch.rand(b, generator=gen)
        if endpoint_fraction > 0:
            at_end = torch.rand(b, generator=gen) < endpoint_fraction
            end = (torch.rand(b, generator=gen) < 0.5).float()
            t = torch.where(at_end, end, t)
        t = t.to(dev)
        tt = t[:, None, None, None]
        x_t = (1.0 - tt) * native + tt * contrast
        v = net(x_t, t)
        return F.mse_loss(v.float(), contrast - native)
    if kind == "regression":
        source, target = (contrast, native) if direction == "c2n" else (native, contrast)
        pred = net(source, torch.zeros(b, device=dev))
        return F.l1_loss(pred.float(), target)
    if kind == "ddpm":
        assert schedule is not None
        target, cond = (native, contrast) if direction == "c2n" else (contrast, native)
        ts = torch.randint(0, schedule.num_timesteps, (b,), generator=gen)
        noise = torch.randn(target.shape, generator=gen).to(dev)
        ts = ts.to(dev)
        x_t = schedule.noisy(target, noise, ts)
        eps = net(x_t, ts.float() / schedule.num_timesteps, cond)
        return F.mse_loss(eps.float(), noise)
    raise ConfigError(f"unknown kind {kind!r}")


def weights_sha256(model: nn.Module) -> str:
    """Hash of every parameter and buffer, in state-dict order (equal hashes = equal weights)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


class _CsvLog:
    """A CSV log that, on resume, keeps only the rows up to the resumed step (no duplicates)."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None) -> None:
        self.path = path
        self.fields = fields
        kept: list[dict[str, str]] = []
        if resume_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(row.get("step", "0")) <= resume_step:
                            kept.append(row)
                    except ValueError:
                        continue
            old_fields = list(kept[0].keys()) if kept else []
            self.fields = old_fields + [f for f in fields if f not in old_fields] if old_fields else fields
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        os.replace(tmp, path)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _tensorboard(run_dir: Path, enabled: bool, purge_step: int | None):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("fit: tensorboard is not installed; loss curves go to CSV only", file=sys.stderr)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)


# -- distributed --------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _setup_dist(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        try:
            return _Dist(device=pick_device(device_name))
        except ValueError as exc:
            raise ConfigError(f"train.device: {exc}") from exc
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    want_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if want_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return _Dist(rank, world, local, device)


def _reduce_mean(value: float, d: _Dist) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    torch.distributed.all_reduce(t)
    return float(t.item()) / d.world


# -- the run ------------------------------------------------------------------------------------


def _precision(cfg: TrainConfig, device: torch.device) -> tuple[str, torch.dtype | None]:
    p = cfg.train.precision
    if device.type != "cuda":
        if p in ("bf16", "fp16"):
            raise ConfigError(
                f"{cfg.source}: train.precision {p} (mixed precision) is for GPUs; use fp32 or auto"
            )
        return "fp32", None
    if p == "auto":
        p = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return p, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ra, rb = resolve_model_config(a), resolve_model_config(b)
    ra.pop("preset", None)
    rb.pop("preset", None)
    return ra == rb


def _short_config(m: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in m.items() if k not in ("name", "preset")})[:120]


def _model_label(m: dict[str, Any]) -> str:
    return f"{m.get('name')}/{m.get('preset')}" if m.get("preset") else str(m.get("name"))


def open_or_build_cache(cfg: TrainConfig, *, progress: bool = True, build: bool = True) -> SliceCache:
    """Open the config's cache; build it first from data.phantom when it does not exist yet."""
    from training.errors import CacheError

    root = Path(cfg.data.cache)
    plan = None
    if cfg.data.phantom is not None:
        from training.phantom_data import PhantomPlan, phantom_to_cache

        p = cfg.data.phantom
        plan = PhantomPlan(
            p.patients,
            p.seed0,
            p.slices,
            p.size,
            p.motion_mm,
            tuple(p.splits) if p.splits else None,
            p.acquisition,
            p.identity_share,
        )
        if not (root / "index.json").exists() and build:
            phantom_to_cache(plan, root, registration=p.registration, progress=progress)
    try:
        cache = SliceCache(root)
    except CacheError as exc:
        raise CacheError(f"{cfg.source}: data.cache: {exc}") from exc
    if plan is not None:
        have = cache.settings.get("phantom")
        if have != plan.settings() or cache.settings.get("registration") != cfg.data.phantom.registration:
            raise CacheError(
                f"{cfg.source}: data.cache {root} holds other data ({have or 'not phantom data'}) than "
                f"data.phantom asks for ({plan.settings()}); point data.cache at a new folder"
            )
    return cache


def fit(
    cfg: TrainConfig,
    *,
    resume: bool | str | os.PathLike[str] = False,
    init_from: str | os.PathLike[str] | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Train as the config says; returns where the checkpoints are. See the module doc for the losses."""
    d = _setup_dist(cfg.train.device)
    try:
        return _fit(
            cfg, d, resume=resume, init_from=init_from, stop_after_steps=stop_after_steps, progress=progress
        )
    finally:
        if d.world > 1 and torch.distributed.is_initialized():
            # Both ranks reach teardown together: a rank that destroys its gloo group while the other
            # still talks to it can abort the process ("terminate called without an active
            # exception"), seen about once in fifteen runs of the two-process test.
            with contextlib.suppress(RuntimeError):
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _fit(
    cfg: TrainConfig,
    d: _Dist,
    *,
    resume: bool | str | os.PathLike[str],
    init_from: str | os.PathLike[str] | None,
    stop_after_steps: int | None,
    progress: bool,
) -> FitResult:
    from tqdm import tqdm

    run_dir = cfg.out_dir
    state_dir = run_dir / "state"
    ckpt_dir = run_dir / "checkpoints"

    # -- resume checks happen before any work, so a wrong --resume costs nothing ----------------
    resume_meta: dict[str, Any] | None = None
    if resume:
        resume_meta = read_state_meta(run_dir if resume is True else Path(resume))
        saved_model = resume_meta.get("model", {})
        if not _same_model(saved_model, cfg.model):
            raise ResumeError(
                f"{resume_meta['_path']} was written for model {_model_label(saved_model)} "
                f"({_short_config(saved_model)}), "
                f"but {cfg.source} asks for {_model_label(cfg.model)}; resume with the config of that run, "
                "or start a new run in another out folder"
            )
        for key in ("kind", "direction"):
            if resume_meta.get(key) != getattr(cfg, key):
                raise ResumeError(
                    f"{resume_meta['_path']} is a {key}={resume_meta.get(key)!r} run, but {cfg.source} "
                    f"says {key}={getattr(cfg, key)!r}"
                )
    elif d.main and (state_dir / "latest.json").exists():
        raise TrainingError(
            f"{run_dir} already holds a training run (state at step {read_state_meta(run_dir).get('step')}); "
            "pass --resume to continue it, or choose another out folder (--set out=...)"
        )

    if d.main:
        cache = open_or_build_cache(cfg, progress=progress)
    d.barrier()
    if not d.main:
        cache = open_or_build_cache(cfg, progress=False, build=False)

    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    net = build_model(cfg.model)
    model_config = dict(net.mfm_config)
    net.to(d.device)
    schedule = DDPMSchedule(**cfg.ddpm.__dict__) if cfg.kind == "ddpm" else None
    o = cfg.optim
    optimizer = torch.optim.Adam(net.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    precision, amp_dtype = _precision(cfg, d.device)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    dataset = PairSliceDataset(cache, cfg.data.train_split, augment=cfg.data.augment, crop=cfg.data.crop)
    side = cfg.data.crop or min(min(p.height, p.width) for p in cache.split(cfg.data.train_split))
    multiple = int(getattr(net, "size_multiple", 1))
    if side < 2 * multiple:
        # The bottleneck would be a single pixel, which instance/group norms cannot normalise.
        what = f"data.crop {side}" if cfg.data.crop else f"the training slices ({side} px)"
        raise ConfigError(
            f"{cfg.source}: {what} too small for {_model_label(cfg.model)}, which downsamples by "
            f"{multiple}; use at least {2 * multiple} px"
        )
    per_pass = len(dataset) // d.world
    steps_per_epoch = cfg.train.steps_per_epoch or max(1, per_pass // o.batch_size)
    total_steps = cfg.train.epochs * steps_per_epoch

    start_step = 0
    best = math.inf
    if resume_meta is not None:
        doc = load_train_state(resume_meta["_path"], model=net, optimizer=optimizer)
        start_step = int(doc["step"])
        best = float(doc.get("best_metric", math.inf) if doc.get("best_metric") is not None else math.inf)
        if scaler is not None and doc.get("scaler"):
            scaler.load_state_dict(doc["scaler"])
        if start_step >= total_steps and d.main:
            print(f"fit: {run_dir} already finished ({start_step} of {total_steps} steps)", file=sys.stderr)
    elif init_from is not None:
        loaded = load_checkpoint(init_from, "cpu")
        if not _same_model(loaded.meta.model, model_config):
            raise ResumeError(
                f"{init_from} holds a {_model_label(loaded.meta.model)} model; {cfg.source} trains "
                f"{_model_label(cfg.model)}"
            )
        net.load_state_dict(loaded.model.state_dict())

    ddp_net: nn.Module = net
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_net = DDP(net, device_ids=[d.local_rank] if d.device.type == "cuda" else None)

    sampler = StreamBatchSampler(
        len(dataset),
        o.batch_size,
        seed=cfg.train.seed,
        start_step=start_step,
        total_steps=total_steps,
        rank=d.rank,
        world_size=d.world,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        pin_memory=d.device.type == "cuda",
    )

    # -- logs, validation set ---------------------------------------------------------------------
    organs = list(cfg.validate.organs)
    val = None
    loss_log = val_log = tb = None
    history: list[dict[str, Any]] = []
    # The in-plane pixel spacing the network sees in training: the Translator resamples other
    # spacings into this range (mfm_engine/fidelity.py).
    spacings = [s for p in cache.split(cfg.data.train_split) if len(p.spacing) == 3 for s in p.spacing[:2]]
    pixel_spacing = (min(spacings), max(spacings)) if spacings else None
    trained_on = cfg.trained_on or (
        f"{cache.description or str(cache.root)}; trained on the {cfg.data.train_split} split"
    )
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {**cfg.to_dict(), "model": model_config})
        if cfg.validate.max_patients > 0:
            val = pick_validation_slices(
                cache,
                cfg.data.val_split,
                organs=organs,
                max_patients=cfg.validate.max_patients,
                per_patient=cfg.validate.slices_per_patient,
            )
        keep = start_step if resume_meta is not None else None
        loss_log = _CsvLog(
            run_dir / "loss.csv", ["step", "epoch", "loss", "lr", "seconds", "slices_per_s"], keep
        )
        val_fields = ["step", "epoch", "val_loss", "mae_hu", "ssim", "psnr_db", "identity_mae_hu"]
        if val is not None and val.labels is not None:
            val_fields += [f"{o_}_err_hu" for o_ in organs] + ["organ_mae_hu", "identity_organ_mae_hu"]
        val_log = _CsvLog(run_dir / "validation.csv", val_fields, keep)
        tb = _tensorboard(run_dir, cfg.train.tensorboard, start_step if resume_meta else None)
        n_params = count_parameters(net)
        print(
            f"fit: {cfg.name}: {cfg.kind} {_model_label(cfg.model)} ({n_params / 1e6:.2f} M parameters) on "
            f"{d.device} ×{d.world}, {len(dataset)} training slices, batch {o.batch_size}×{d.world}, "
            f"{steps_per_epoch} steps/epoch × {cfg.train.epochs} epochs = {total_steps} steps"
            + (f", resuming at step {start_step}" if start_step else ""),
            file=sys.stderr,
        )
    best_name = cfg.validate.best_metric
    if best_name == "auto":
        best_name = "organ_mae_hu" if (val is not None and val.labels is not None) else "mae_hu"

    def save_state(step: int) -> None:
        if not d.main:
            return
        save_train_state(
            state_dir,
            model=net,
            optimizer=optimizer,
            step=step,
            scaler_state=scaler.state_dict() if scaler is not None else None,
            meta={
                "epoch": step // steps_per_epoch,
                "total_steps": total_steps,
                "kind": cfg.kind,
                "direction": cfg.direction,
                "model": model_config,
                "config": cfg.to_dict(),
                "best_metric": None if math.isinf(best) else best,
                "world_size": d.world,
            },
        )

    def val_loss(step: int) -> float:
        if val is None:
            return float("nan")
        from mfm_engine.intensity import hu_to_model

        gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, 9))
        was = net.training
        net.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(val.names), 2):
                nat = torch.from_numpy(hu_to_model(val.native_hu[i : i + 2])).unsqueeze(1).to(d.device)
                con = torch.from_numpy(hu_to_model(val.contrast_hu[i : i + 2])).unsqueeze(1).to(d.device)
                loss = training_loss(cfg.kind, net, nat, con, gen, direction=cfg.direction, schedule=schedule)
                total += float(loss) * nat.shape[0]
        net.train(was)
        return total / len(val.names)

    def end_of_epoch(step: int, epoch: int) -> None:
        nonlocal best
        metrics: dict[str, float] = {}
        if d.main:
            last_epoch = step >= total_steps
            if val is not None and (epoch % cfg.validate.every_epochs == 0 or last_epoch):
                metrics = {"val_loss": val_loss(step)}
                metrics.update(
                    run_validation(
                        net,
                        val,
                        kind=cfg.kind,
                        direction=cfg.direction,
                        solver=cfg.validate.solver,
                        steps=cfg.validate.steps,
                        organs=organs,
                        legend=cache.legend,
                        device=d.device,
                        ddpm=cfg.ddpm.__dict__ if cfg.kind == "ddpm" else None,
                    )
                )
                row = {"step": step, "epoch": epoch, **metrics}
                history.append(row)
                val_log.write(row)
                if tb is not None:
                    for k, v in metrics.items():
                        tb.add_scalar(f"val/{k}", v, step)
                shown = ", ".join(
                    f"{k} {v:.2f}"
                    for k, v in metrics.items()
                    if k in ("mae_hu", "organ_mae_hu") or k.endswith("_err_hu")
                )
                print(f"fit: epoch {epoch} (step {step}): {shown}", file=sys.stderr)
            _save_checkpoints(step, epoch, metrics)
        save_state(step)

    result = FitResult(run_dir, start_step, total_steps, history=history)

    def _save_checkpoints(step: int, epoch: int, metrics: dict[str, float]) -> None:
        nonlocal best
        common = dict(
            model_config=model_config,
            kind=cfg.kind,
            hu_range=(HU_MIN, HU_MAX),
            trained_on=trained_on,
            pixel_spacing_mm=pixel_spacing,
            metrics={k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)},
            extra={
                "intended_use": INTENDED_USE,
                **cfg.extra,
                "training": {
                    "run": cfg.name,
                    "epoch": epoch,
                    "step": step,
                    "total_steps": total_steps,
                    "world_size": d.world,
                    "validation": {
                        "split": cfg.data.val_split,
                        "solver": cfg.validate.solver,
                        "steps": cfg.validate.steps,
                    },
                    "config": cfg.to_dict(),
                },
            },
            ddpm_schedule=schedule.to_dict() if schedule is not None else None,
            direction=cfg.direction,
        )
        path = save_checkpoint(net, ckpt_dir / f"epoch_{epoch:03d}", **common)
        result.last_checkpoint = save_checkpoint(net, ckpt_dir / "last", **common)
        value = metrics.get(best_name)
        if value is not None and math.isfinite(value) and value < best:
            best = value
            result.best_checkpoint = save_checkpoint(net, ckpt_dir / "best", **common)
            result.best_metric = best
        keep = cfg.train.keep_epoch_checkpoints
        if keep is not None:
            epochs = sorted(ckpt_dir.glob("epoch_*.safetensors"))
            for old in epochs[: max(0, len(epochs) - keep)]:
                if old != path:
                    old.unlink(missing_ok=True)
                    old.with_suffix(".json").unlink(missing_ok=True)

    # -- the loop -----------------------------------------------------------------------------------
    net.train()
    step = start_step
    window: list[float] = []
    t_window = time.perf_counter()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=cfg.name,
        unit="step",
        file=sys.stderr,
        disable=not (progress and d.main),
    )
    stop_at = start_step + stop_after_steps if stop_after_steps is not None else None
    for batch in loader:
        lr = learning_rate(step, cfg, total_steps)
        for g in optimizer.param_groups:
            g["lr"] = lr
        torch.manual_seed(derive_seed(cfg.train.seed, 2, step, d.rank))  # dropout and the like
        gen = torch.Generator().manual_seed(derive_seed(cfg.train.seed, 3, step, d.rank))
        native = batch["native"].to(d.device, non_blocking=True)
        contrast = batch["contrast"].to(d.device, non_blocking=True)
        with torch.autocast(device_type=d.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = training_loss(
                cfg.kind,
                ddp_net,
                native,
                contrast,
                gen,
                direction=cfg.direction,
                schedule=schedule,
                endpoint_fraction=cfg.flow.endpoint_fraction,
            )
        if not torch.isfinite(loss):
            raise TrainingError(
                f"{cfg.name}: the loss became {float(loss)} at step {step}; "
                "lower optim.lr or add optim.grad_clip"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        step += 1
        window.append(float(loss.detach()))
        bar.update(1)
        if step % cfg.train.log_every == 0 or step == total_steps:
            mean_loss = _reduce_mean(sum(window) / len(window), d)
            elapsed = time.perf_counter() - t_window
            if d.main:
                rate = len(window) * o.batch_size * d.world / max(elapsed, 1e-9)
                loss_log.write(
                    {
                        "step": step,
                        "epoch": (step - 1) // steps_per_epoch + 1,
                        "loss": mean_loss,
                        "lr": lr,
                        "seconds": elapsed,
                        "slices_per_s": rate,
                    }
                )
                if tb is not None:
                    tb.add_scalar("train/loss", mean_loss, step)
                    tb.add_scalar("train/lr", lr, step)
                bar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.2g}")
            window = []
            t_window = time.perf_counter()
        if step % steps_per_epoch == 0:
            end_of_epoch(step, step // steps_per_epoch)
        elif step % cfg.train.save_state_every == 0 or (stop_at is not None and step >= stop_at):
            save_state(step)
        d.barrier()
        if stop_at is not None and step >= stop_at and step < total_steps:
            result.stopped_early = True
            break
    bar.close()
    result.step = step
    result.best_metric = None if math.isinf(best) else best
    if tb is not None:
        tb.close()

    # -- every rank must end with the same weights ---------------------------------------------------
    digest = weights_sha256(net)
    digests = [digest]
    if d.world > 1:
        digests = [None] * d.world  # type: ignore[list-item]
        torch.distributed.all_gather_object(digests, digest)
    if d.main:
        if result.last_checkpoint is None and (ckpt_dir / "last.safetensors").exists():
            result.last_checkpoint = ckpt_dir / "last.safetensors"
        if result.best_checkpoint is None and (ckpt_dir / "best.safetensors").exists():
            result.best_checkpoint = ckpt_dir / "best.safetensors"
        summary = {
            "name": cfg.name,
            "step": step,
            "total_steps": total_steps,
            "finished": step >= total_steps,
            "world_size": d.world,
            "rank_weight_sha256": digests,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
            "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
            "best_metric": {best_name: result.best_metric},
        }
        atomic_write_json(run_dir / "summary.json", summary)
    if len(set(digests)) > 1:
        raise TrainingError(f"{cfg.name}: the {d.world} processes ended with different weights: {digests}")
    return result


def resume_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Step, epoch and model of the state a run would resume from (for messages and tests)."""
    meta = read_state_meta(find_state(path))
    return {k: meta.get(k) for k in ("step", "epoch", "total_steps", "kind", "direction", "model")}
