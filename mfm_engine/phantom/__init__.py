"""Procedural, seeded, paired abdominal CT phantom (native + arterial) with a label map.

A stand-in for patient data — for the demo, the tests and CPU training — and labelled as one
everywhere it appears (``meta['phantom']``, series descriptions starting with ``PHANTOM``).
See docs/phantom.md for the anatomy, the HU table and its sources.
"""

from mfm_engine.phantom.generator import PhantomError, PhantomPair, make_phantom_pair, phantom_slice_count
from mfm_engine.phantom.tissues import LABELS, LEGEND, TISSUES, Tissue

__all__ = [
    "LABELS",
    "LEGEND",
    "TISSUES",
    "PhantomError",
    "PhantomPair",
    "Tissue",
    "make_phantom_pair",
    "phantom_slice_count",
]
