"""MONAI ``UNet``, ``SegResNet`` and ``SwinUNETR`` as velocity networks ``f(x_t, t) -> v``.

Time reaches a MONAI backbone two ways:

1. **Input channel** (always, as in the paper's code): the backbone is built with
   ``in_channels=2`` and sees ``[x_t, t·1]`` (plus ``cond_channels`` conditioning images, if any).
2. **FiLM on the output features** (``time_film=True``, the default here; off in the
   ``paper`` presets, which reproduce the authors' input-channel-only conditioning): the
   backbone emits ``film_channels`` feature maps instead of one; then
   ``h = SiLU(features)``, ``h = A*h + B`` with per-channel ``A = 1 + a, B`` from a Linear
   layer on the same sinusoidal-embedding → MLP time vector TimeResNet uses, and a 1×1
   conv maps ``h`` to the velocity. MONAI's blocks take no extra argument, so FiLM inside
   them would mean forking MONAI; modulating the output features keeps the backbones
   unmodified while still giving the time a multiplicative path.

MONAI is imported when a backbone is built, not when this module is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from mfm_engine.models.time_embedding import (
    ModelConfigError,
    TimeEmbedding,
    TimeModulation,
    VelocityNet,
)

# Keys of the time conditioning shared by every MONAI wrapper, with their defaults.
TIME_DEFAULTS: dict[str, Any] = {
    "time_film": True,
    "film_channels": 16,
    "time_embed_dim": 128,
    "time_hidden_dim": 256,
    "time_dim": 128,
    "time_scale": 1000.0,
    "cond_channels": 0,
}


class MonaiVelocityNet(VelocityNet):
    """A MONAI 2-D backbone fed ``[x_t, t·1]``, optionally FiLM-modulated by the time embedding."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        size_multiple: int,
        time_film: bool,
        film_channels: int,
        time_embed_dim: int,
        time_hidden_dim: int,
        time_dim: int,
        time_scale: float,
        cond_channels: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.cond_channels = int(cond_channels)
        self.size_multiple = int(size_multiple)
        self.time_film = bool(time_film)
        if self.time_film:
            self.time_embed = TimeEmbedding(time_embed_dim, time_hidden_dim, time_dim, time_scale)
            self.film = TimeModulation(time_dim, film_channels)
            self.head = nn.Conv2d(film_channels, 1, 1)

    def velocity(self, inputs: Tensor, t: Tensor) -> Tensor:
        """inputs ``[x_t, t·1, cond]`` (B,2+K,H,W), t (B,) -> v (B,1,H,W)."""
        features = self.backbone(inputs)
        if not self.time_film:
            return features
        h = self.film(F.silu(features), self.time_embed(t))
        return self.head(h)


def _split(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the time-conditioning keys (with defaults filled in) from the backbone's own."""
    reserved = sorted({"spatial_dims", "in_channels", "out_channels"} & set(config))
    if reserved:
        raise ModelConfigError(
            f"{reserved} are set by the velocity wrapper (2-D, [x_t, t·1, cond] in, velocity out); "
            "drop them from the config (use cond_channels / film_channels instead)"
        )
    time = {k: config.get(k, v) for k, v in TIME_DEFAULTS.items()}
    rest = {k: v for k, v in config.items() if k not in TIME_DEFAULTS}
    return time, rest


def _in_channels(time: Mapping[str, Any]) -> int:
    return 2 + int(time["cond_channels"])  # [x_t, t·1, cond]


def _out_channels(time: Mapping[str, Any]) -> int:
    return int(time["film_channels"]) if time["time_film"] else 1


def _as_monai_arg(value: Any) -> Any:
    """JSON lists back to the tuples MONAI expects for ``("NAME", {args})`` layer specs."""
    if isinstance(value, list):
        return tuple(_as_monai_arg(v) for v in value)
    return value


def _construct(cls: Callable[..., nn.Module], name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call a MONAI constructor, turning its TypeError/ValueError into a ModelConfigError."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelConfigError(f"cannot build {name} from config {kwargs}: {exc}") from exc


def build_monai_unet(config: Mapping[str, Any]) -> MonaiVelocityNet:
    """MONAI ``UNet`` (2-D) velocity network; keys are UNet's own plus the time keys."""
    from monai.networks.nets import UNet

    time, rest = _split(config)
    kwargs = {k: _as_monai_arg(v) for k, v in rest.items()}
    kwargs.update(spatial_dims=2, in_channels=_in_channels(time), out_channels=_out_channels(time))
    strides = kwargs.get("strides", ())
    backbone = _construct(UNet, "monai_unet", kwargs)
    multiple = math.prod(int(s) for s in strides) if strides else 1
    return MonaiVelocityNet(backbone, size_multiple=multiple, **time)


def build_monai_segresnet(config: Mapping[str, Any]) -> MonaiVelocityNet:
    """MONAI ``SegResNet`` (2-D) velocity network; keys are SegResNet's own plus the time keys."""
    from monai.networks.nets import SegResNet

    time, rest = _split(config)
    kwargs = {k: _as_monai_arg(v) for k, v in rest.items()}
    kwargs.update(spatial_dims=2, in_channels=_in_channels(time), out_channels=_out_channels(time))
    backbone = _construct(SegResNet, "monai_segresnet", kwargs)
    levels = len(kwargs.get("blocks_down", (1, 2, 2, 4)))
    return MonaiVelocityNet(backbone, size_multiple=2 ** (levels - 1), **time)


def build_monai_swinunetr(config: Mapping[str, Any]) -> MonaiVelocityNet:
    """MONAI ``SwinUNETR`` (2-D) velocity network; H, W must be multiples of patch_size**5 (32)."""
    from monai.networks.nets import SwinUNETR

    time, rest = _split(config)
    if "img_size" in rest:
        # Removed from SwinUNETR in MONAI 1.5; the network is size-agnostic (multiples of 32).
        raise ModelConfigError("monai_swinunetr: 'img_size' is not a SwinUNETR argument any more; drop it")
    kwargs = {k: _as_monai_arg(v) for k, v in rest.items()}
    kwargs.update(spatial_dims=2, in_channels=_in_channels(time), out_channels=_out_channels(time))
    backbone = _construct(SwinUNETR, "monai_swinunetr", kwargs)
    multiple = int(kwargs.get("patch_size", 2)) ** 5
    return MonaiVelocityNet(backbone, size_multiple=multiple, **time)
