"""Shared pieces of the training loops: device/AMP setup, optimizers and schedules, resumable batches.

`ResumableBatches` yields batches in a fixed order per (seed, epoch) and can start in the middle of an
epoch, so a resumed run sees exactly the batches an uninterrupted run would have seen. The sampler
hands out `(index, per-sample seed)` keys (see `train.data.ShardLocalSampler`), so a sample's content
does not depend on which worker reads it or on what was read before.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils.data import Sampler

from csvr.train.config import OptimConfig, RunConfig
from csvr.train.distributed import DistInfo, any_rank

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the message names the term, the step and the last good checkpoint."""

    def __init__(self, term: str, value: float, step: int, stage: str, checkpoint: str | None = None):
        self.term, self.value, self.step, self.stage, self.checkpoint = term, value, step, stage, checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(f"non-finite loss {term!r} = {value} at step {step} (stage {stage}); "
                         f"the run stopped without applying this update; {where}")


def first_non_finite(losses: dict[str, torch.Tensor]) -> tuple[str, float] | None:
    """The first (name, value) of `losses` that is not finite, or None."""
    for name, value in losses.items():
        v = float(value.detach().float()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            return name, v
    return None


def raise_if_non_finite(losses: dict[str, torch.Tensor], *, step: int, stage: str, checkpoint: str | None,
                        device: torch.device, logger: Any = None) -> None:
    """Stop the run before it applies an update from a NaN/inf loss: when any rank's `losses` hold one
    (`any_rank`, so every rank raises together), log a `non_finite_loss` event with `logger` (if given)
    and raise NonFiniteLossError naming the term, `step` (the step being taken), `stage` and `checkpoint`
    (the last good one, or None)."""
    bad = first_non_finite(losses)
    if any_rank(bad is not None, device):
        name, value = bad if bad is not None else ("<on another rank>", float("nan"))
        if logger is not None:
            logger.log({"step": step, "stage": stage, "event": "non_finite_loss", "term": name, "value": value})
        raise NonFiniteLossError(name, value, step, stage, checkpoint)


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast on CUDA when `amp` is auto/bf16; a no-op context otherwise (CPU runs in fp32)."""
    if device.type == "cuda" and amp in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if amp == "bf16" and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_optimizer(params_gen: list, params_disc: list, cfg: OptimConfig, global_batch: int) -> torch.optim.Optimizer:
    """SGD (or Adam) with lr = lr_per_sample x global batch; discriminators get `disc_lr_mult` x lr."""
    lr = cfg.lr_per_sample * global_batch
    groups = [{"params": params_gen, "lr": lr, "name": "main"}]
    if params_disc:
        groups.append({"params": params_disc, "lr": lr * cfg.disc_lr_mult, "name": "disc"})
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=lr, betas=(0.5, 0.999), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int,
                    warmup_steps: int | None = None):
    """Linear warmup (`warmup_steps`, default `cfg.warmup_steps`), then cosine annealing to
    `min_lr_frac` x lr (or constant) over `total_steps`."""
    warmup = cfg.warmup_steps if warmup_steps is None else int(warmup_steps)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def setup_runtime(run: RunConfig) -> None:
    """Threads (`run.threads`, 0 = this process's share of the cores) and deterministic mode."""
    from csvr.train.checkpoint import set_deterministic
    from csvr.train.distributed import cores_per_process

    torch.set_num_threads(run.threads if run.threads > 0 else cores_per_process())
    set_deterministic(run.deterministic)


class _EndlessKeys(Sampler):
    """Keys of epoch after epoch (each trimmed to whole batches), starting `skip` keys into `epoch`."""

    def __init__(self, sampler, per_epoch: int, epoch: int, skip: int):
        self.sampler, self.per_epoch, self.epoch, self.skip = sampler, per_epoch, epoch, skip

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        while True:
            self.sampler.set_epoch(epoch)
            keys = list(iter(self.sampler))[:self.per_epoch]
            yield from keys[skip:]
            epoch, skip = epoch + 1, 0


@dataclass
class Position:
    """Where the input stream is: epoch and number of batches already consumed in it."""

    epoch: int = 0
    batch: int = 0


LOADERS = ("threads", "processes")


class ResumableBatches:
    """Endless batches over a dataset, epoch after epoch, that can start at any (epoch, batch) position.

    Each epoch's keys come from `sampler.set_epoch(e); list(sampler)`, cut to whole batches of
    `batch_size` (drop_last). One loader (threads or worker processes that live for the whole run)
    reads an endless key stream, and samples are pure functions of their keys, so a stream started
    mid-epoch yields exactly the batches an uninterrupted one would.

    `loader="threads"` (default, for datasets with the batch protocol `batch_layout`/`fill_batch`):
    `train.data.ThreadedLoader`, `max(1, num_workers)` threads filling a ring of reused buffers
    (`safe=False`). With a CUDA `device` the ring is pinned and each batch is copied to the device at
    hand-out (non-blocking) behind a CUDA event that the refilling thread waits on; batches are then
    device tensors. On the CPU a batch is a view into the ring, valid until `depth` more batches have
    been requested: the training loops hold a raw batch only until they ask for the next one, and
    augmentation makes new tensors of the pixels and poses (see docs/loader.md).
    `loader="processes"` (or a dataset without the batch protocol): a `DataLoader` with
    `num_workers` worker processes and `collate_fn=collate_samples` (the batch `__getitems__`
    assembled, not re-collated), its generator seeded from `seed` so no global RNG is consumed.
    """

    def __init__(self, dataset, sampler, batch_size: int, *, num_workers: int, pin_memory: bool,
                 seed: int, position: Position | None = None, device: torch.device | str | None = None,
                 loader: str = "threads", depth: int = 2):
        if loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.seed = seed
        self.position = position or Position()
        self.device = torch.device(device) if device is not None else None
        threads_ok = hasattr(dataset, "batch_layout") and hasattr(dataset, "fill_batch")
        self.loader = loader if threads_ok else "processes"
        self.depth = depth

    def batches_per_epoch(self) -> int:
        """Whole batches per epoch on this rank (the same every epoch)."""
        self.sampler.set_epoch(self.position.epoch)
        count = len(list(iter(self.sampler)))
        n = count // self.batch_size
        if n == 0:
            raise ValueError(f"the split has fewer samples ({count}) than one batch ({self.batch_size}) on this "
                             "rank; lower batch_size")
        return n

    def _loader(self, keys: _EndlessKeys):
        if self.loader == "threads":
            from csvr.train.data import ThreadedLoader

            cuda = self.device is not None and self.device.type == "cuda"
            return ThreadedLoader(self.dataset, self.batch_size, keys, threads=max(1, self.num_workers),
                                  depth=self.depth, pin_memory=self.pin_memory or cuda, safe=False,
                                  device=self.device if cuda else None)
        from csvr.train.data import collate_samples, make_loader

        return make_loader(self.dataset, self.batch_size, sampler=keys, workers=self.num_workers,
                           pin_memory=self.pin_memory, collate_fn=collate_samples, seed=self.seed, prefetch=4)

    def __iter__(self) -> Iterator[dict]:
        n = self.batches_per_epoch()
        if self.position.batch >= n:
            self.position = Position(self.position.epoch + 1, 0)
        keys = _EndlessKeys(self.sampler, n * self.batch_size, self.position.epoch,
                            self.position.batch * self.batch_size)
        loader = self._loader(keys)
        try:
            for batch in loader:
                self.position.batch += 1
                if self.position.batch == n:
                    self.position = Position(self.position.epoch + 1, 0)
                yield batch
        finally:
            close = getattr(loader, "close", None)
            if close is not None:  # ThreadedLoader: stop its threads when the stream is dropped
                close()


def progress_bar(desc: str, total: int, start: int, enabled: bool, unit: str = "it"):
    """A tqdm bar over a run's steps on the main rank, or None; TQDM_DISABLE (`csvr -q`) hides it."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch to `device` (non-blocking when pinned; tensors already there, such
    as the batches `ResumableBatches` copies to a CUDA device itself, are passed through)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def wrap_ddp(model: torch.nn.Module, dist_info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running with more than one process. Every trained
    parameter must take part in the loss (`grad_norms` checks it), so no unused-parameter search."""
    if not dist_info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=False)
