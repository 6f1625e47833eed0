"""Errors of the training module: each message names the file and the problem (never a traceback)."""

from __future__ import annotations

from mfm_engine.errors import MFMError


class TrainingError(MFMError):
    """Base class of every training-module problem a user can act on."""


class ManifestError(TrainingError):
    """A pair manifest or a data folder that cannot be used as it is."""


class PairError(TrainingError):
    """One contrast/native pair that cannot be used (reported and dropped by ``prepare``)."""


class RegistrationError(PairError):
    """Registering a contrast series to its native failed."""


class CacheError(TrainingError):
    """A slice cache that is missing, unfinished, corrupt or from an incompatible run."""


class ConfigError(TrainingError):
    """A training or evaluation config with an unknown or impossible value."""


class ResumeError(TrainingError):
    """A training state that cannot be resumed with this config (another model, a corrupt file…)."""
