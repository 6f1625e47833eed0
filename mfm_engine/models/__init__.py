"""Velocity networks ``f(x_t (B,1,H,W), t (B,)) -> v (B,1,H,W)``: TimeResNet and MONAI backbones."""

from mfm_engine.models.monai_backbones import MonaiVelocityNet
from mfm_engine.models.registry import (
    MODEL_BUILDERS,
    MODEL_PRESETS,
    build_model,
    count_parameters,
    resolve_model_config,
)
from mfm_engine.models.time_embedding import (
    ModelConfigError,
    TimeEmbedding,
    TimeModulation,
    VelocityNet,
    sinusoidal_embedding,
)
from mfm_engine.models.timeresnet import TimeResNet, TimeResNetConfig, modulation_layers

__all__ = [
    "MODEL_BUILDERS",
    "MODEL_PRESETS",
    "ModelConfigError",
    "MonaiVelocityNet",
    "TimeEmbedding",
    "TimeModulation",
    "TimeResNet",
    "TimeResNetConfig",
    "VelocityNet",
    "build_model",
    "count_parameters",
    "modulation_layers",
    "resolve_model_config",
    "sinusoidal_embedding",
]
