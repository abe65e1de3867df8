"""A sampler that keeps reads shard-local, reshuffles every epoch, and splits work across ranks.

Each epoch (seeded by (seed, epoch)) the shards of the `frames` array are put in random order and cut
into groups of `group_shards` shards; inside a group the items are shuffled together. Consecutive
samples, hence a DataLoader batch and the worker that reads it, therefore come from at most
`group_shards` shards, while batches still mix several shards (a store in manifest order puts one class
into neighbouring videos: a single-shard batch would be nearly single-class, bad for contrastive
negatives and batch norm). `group_shards=0` means one group, i.e. a full shuffle.

Ranks take contiguous, equal parts of the epoch's order (so each rank stays shard-local too). As in
`DistributedSampler`, `drop_last=False` pads the order by wrapping around so every rank gets the same
count (at most world_size - 1 repeats per epoch); `drop_last=True` drops the tail instead. DataLoader
workers need nothing more: the main process hands each batch to one worker, so no two workers ever
load the same item.

Items are yielded as `(index, sample_seed)`; the dataset draws the clip start from that seed, so the
batches are a pure function of (seed, epoch), whatever the number of workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from .dataset import sample_seed


def _dist_info(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, me = torch.distributed.get_world_size(), torch.distributed.get_rank()
        else:
            world, me = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        num_replicas = world if num_replicas is None else num_replicas
        rank = me if rank is None else rank
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
    return num_replicas, rank


class ShardLocalSampler(Sampler):
    """Shard-local, epoch-shuffled, rank-split sampler over a `ClipDataset` / `EvalClipDataset`.

    `dataset` needs `__len__` and `item_shards()` (per-item shard ids). `shuffle=False` keeps dataset
    order (evaluation). Call `set_epoch(e)` before each epoch.
    """

    def __init__(self, dataset, *, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, group_shards: int = 4,
                 yield_seeds: bool = True) -> None:
        self.num_replicas, self.rank = _dist_info(num_replicas, rank)
        self.shards = np.asarray(dataset.item_shards(), dtype=np.int64)
        if len(self.shards) != len(dataset):
            raise ValueError("dataset.item_shards() must give one shard id per item")
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.group_shards = int(group_shards)
        self.yield_seeds = yield_seeds
        self.epoch = 0
        n = len(self.shards)
        if drop_last:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        if self.num_samples == 0:
            raise ValueError(f"{n} items cannot be split across {self.num_replicas} ranks with drop_last=True")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order `__iter__` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def epoch_order(self) -> np.ndarray:
        """The full order of items for this epoch, before the split across ranks."""
        n = len(self.shards)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch])
        uniq, shard_pos = np.unique(self.shards, return_inverse=True)
        rank = np.empty(len(uniq), np.int64)
        rank[rng.permutation(len(uniq))] = np.arange(len(uniq))  # shard -> its place in this epoch's order
        g = len(uniq) if self.group_shards <= 0 else self.group_shards
        group = rank[shard_pos] // g
        # order by group, randomly inside a group (O(n log n), fine for Kinetics-size tables)
        return np.lexsort((rng.random(n), group)).astype(np.int64)

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        order = self.epoch_order()
        total = self.num_samples * self.num_replicas
        if total > len(order):
            order = np.resize(order, total)  # wraps around
        positions = np.arange(self.rank * self.num_samples, (self.rank + 1) * self.num_samples)
        for p in positions:
            i = int(order[p])
            yield (i, sample_seed(self.seed, self.epoch, int(p))) if self.yield_seeds else i
