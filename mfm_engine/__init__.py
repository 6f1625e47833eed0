"""MFM Studio engine: Qt-free volumes, study I/O, phantom, models, solvers, translation, metrics."""

from mfm_engine.volume import PLANES, Plane, Volume

__all__ = ["PLANES", "Plane", "Volume"]
__version__ = "0.1.0"
