"""Torch on one intra-op thread, for tests of tiny networks on a busy two-core machine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread: on a busy two-core machine two spinning threads make tiny convs ~15× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
