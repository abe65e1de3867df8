"""The one place a `torch.utils.data.DataLoader` is built (training batches, evaluation batches, the input
benchmarks), so worker count, prefetch, pinning and seeding read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def loader_generator(seed: int) -> torch.Generator:
    """The DataLoader's generator for run seed `seed` (it seeds the worker processes' base seed)."""
    return torch.Generator().manual_seed(seed * 1000003 + 17)


def make_loader(dataset: Dataset, batch_size: int, *, sampler: Sampler | None = None, workers: int = 0,
                pin_memory: bool = False, collate_fn: Callable[[list], Any] | None = None,
                seed: int | None = None, prefetch: int | None = None, persistent: bool = False,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader over `dataset`: `workers` worker processes (0: in the main process), `prefetch`
    batches per worker when there are workers (None: DataLoader's default), workers kept between epochs
    when `persistent` (and there are workers), a generator from `loader_generator(seed)` when `seed` is
    given (else the global RNG seeds the workers), `collate_fn` None for default_collate. Samples come
    from `sampler`, else in dataset order."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=drop_last, collate_fn=collate_fn,
                      generator=loader_generator(seed) if seed is not None else None,
                      prefetch_factor=prefetch if workers else None,
                      persistent_workers=persistent and workers > 0)
