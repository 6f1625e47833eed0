"""Training batches from the slice cache: a dataset of pair slices and a resumable, distributed batch order.

Every random choice is a function of (seed, position in the data stream), never of a stateful
generator: the order of slices comes from :class:`torch.utils.data.DistributedSampler` seeded
per pass over the data, and each sample's augmentation is seeded from its position. A run that
stops after step k and resumes therefore sees exactly the batches an uninterrupted run would,
on any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from training.augment import apply_pair_augmentation, pair_augmentation
from training.cache import SliceCache
from training.errors import CacheError


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers (SeedSequence mixing: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class PairSliceDataset(Dataset):
    """Axial slice pairs of one split; item ``(index, seed)`` → {'contrast', 'native'} (1, H, W) tensors."""

    def __init__(
        self, cache: SliceCache, split: str, *, augment: bool = True, crop: int | None = None
    ) -> None:
        self.cache = cache
        self.split = split
        patients = cache.split(split)
        if not patients:
            raise CacheError(f"{cache.root}: the cache has no {split!r} patients")
        self.items: list[tuple[str, int]] = [(p.id, k) for p in patients for k in range(p.n_slices)]
        sizes = {(p.height, p.width) for p in patients}
        if crop is None and len(sizes) > 1:
            raise CacheError(
                f"{cache.root}: {split} slices come in several sizes {sorted(sizes)}; set data.crop so that "
                "batches share one size"
            )
        smallest = min(min(s) for s in sizes)
        if crop is not None and crop > smallest:
            raise CacheError(
                f"{cache.root}: data.crop {crop} is larger than the smallest slice ({smallest} px)"
            )
        self.crop = crop
        self.transform = pair_augmentation(max(max(s) for s in sizes), crop=crop, augment=augment)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        pid, k = self.items[index]
        arrays = self.cache.arrays(pid)
        sample = {
            "contrast": np.array(arrays["contrast"][k], dtype=np.float32)[None],
            "native": np.array(arrays["native"][k], dtype=np.float32)[None],
        }
        return apply_pair_augmentation(self.transform, sample, seed)


class StreamBatchSampler:
    """Batches of ``(index, seed)`` for steps ``start_step .. total_steps-1`` of an endless data stream.

    The stream is one shuffled pass over the dataset after another (pass ``e`` shuffled by
    ``DistributedSampler`` with ``set_epoch(e)``; each process gets its own share). Batch ``s``
    is items ``s·B .. s·B+B-1`` of this process's stream, so it depends only on ``s``.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        *,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.sampler = DistributedSampler(
            range(n_items), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.per_pass = len(self.sampler)
        if self.per_pass < batch_size:
            raise CacheError(
                f"only {self.per_pass} training slice(s) per process, fewer than a batch of {batch_size}"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.start_step = start_step
        self.total_steps = total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def _pass(self, epoch: int) -> list[int]:
        self.sampler.set_epoch(epoch)
        return list(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.batch_size
        position = self.start_step * b
        epoch, offset = divmod(position, self.per_pass)
        order = self._pass(epoch)
        for _ in range(len(self)):
            batch: list[tuple[int, int]] = []
            while len(batch) < b:
                if offset == self.per_pass:
                    epoch, offset = epoch + 1, 0
                    order = self._pass(epoch)
                batch.append((order[offset], derive_seed(self.seed, 1, self.rank, epoch, offset)))
                offset += 1
            yield batch


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack dicts of (1, H, W) tensors into (B, 1, H, W)."""
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
