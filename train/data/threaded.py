"""`ThreadedLoader`: batches assembled in the main process by a thread pool into reused buffers.

Why: through `DataLoader(num_workers>0)` every batch crosses processes in a freshly allocated
shared-memory segment; on the benchmark machine that transport (zero-fill + first-touch page faults +
descriptor passing) cost about as much as reading the store itself (docs/loader.md). Here nothing
crosses a process: `threads` threads fill a ring of preallocated (optionally pinned) batch buffers in
place. The hot path releases the GIL (`os.pread`, Blosc/Zstd decompression in numcodecs, numpy copies
of whole frames), so the threads overlap; the Python bookkeeping per sample does not.

Contract for reused buffers (`safe=False`): a batch handed out is a view into ring buffer k, which is
refilled only after the consumer has asked for `depth` more batches. A training loop must consume or
copy a batch (e.g. `.to(device)`, and with `non_blocking=True` let the copy finish, which the next
optimizer step does) before asking for `depth` more. `safe=True` (the default) clones every batch on
hand-out, so a batch may be kept for ever (at the cost of one allocation + copy per batch).

Copies to a GPU (`device="cuda"`): the ring is pinned and every batch is copied to the device with
`non_blocking=True` at hand-out; a CUDA event recorded right after that copy is the slot's *fence*,
and the thread that refills the slot waits on it first (as FFCV's loader does), so an asynchronous
copy never reads a buffer that is being overwritten. The consumer gets device tensors it may keep. The
fence logic does not depend on CUDA: `transfer` (any `batch -> (batch, fence)` with `fence.synchronize()`)
replaces the copy, which is how the CPU tests exercise it.

Determinism: keys come from the sampler in order and batch j always holds the sampler's j-th
`batch_size` keys, whichever thread filled it; with `ShardLocalSampler` keys `(index, seed)` a batch is
a pure function of (seed, epoch), identical to the DataLoader path. Each thread reads through its own
copy of the dataset (pickled like a DataLoader worker's), so readers, file handles, chunk caches and
scratch buffers are never shared between threads.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from .dataset import _ALIGN

log = logging.getLogger(__name__)

Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]
Transfer = Callable[[dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], Any]]


def device_transfer(device: torch.device | str) -> Transfer | None:
    """The hand-out copy to `device`: None for the CPU (batches stay views of the ring, `depth` contract),
    else a function that copies a batch with `non_blocking=True` and returns it with the fence of the
    copy (a CUDA event recorded on the current stream right after it)."""
    device = torch.device(device)
    if device.type == "cpu":
        return None

    cuda = device.type == "cuda"

    def transfer(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        # asynchronous (and fenced) only on CUDA; other devices copy synchronously and need no fence
        out = {k: t.to(device, non_blocking=cuda) for k, t in batch.items()}
        if not cuda:
            return out, None
        fence = torch.cuda.Event()
        fence.record(torch.cuda.current_stream(device))
        return out, fence

    return transfer


def _ring_buffer(layout: Layout, pin: bool) -> dict[str, torch.Tensor]:
    """Tensors of `layout` carved out of one (optionally pinned) buffer, aligned like `_alloc_batch`."""
    offsets, total = [], 0
    for shape, dtype in layout.values():
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
        offsets.append((total, nbytes))
        total += -(-nbytes // _ALIGN) * _ALIGN
    buf = torch.empty(max(total, 1), dtype=torch.uint8, pin_memory=pin)
    return {name: buf[off:off + nb].view(dtype).view(shape)
            for (name, (shape, dtype)), (off, nb) in zip(layout.items(), offsets)}


class _Epoch:
    """State of one pass over the sampler: the jobs in flight, cancelled and awaited on close."""

    def __init__(self) -> None:
        self.pending: deque[Future] = deque()
        self.closed = False

    def close(self) -> None:
        """Cancel jobs not started and wait for running ones, so no thread writes a buffer afterwards."""
        self.closed = True
        for f in self.pending:
            f.cancel()
        for f in self.pending:
            if not f.cancelled():
                try:
                    f.result()
                except Exception:  # noqa: BLE001 -- the error was (or will not be) reported to the consumer
                    pass
        self.pending.clear()


class ThreadedLoader:
    """Iterable over collated batches of `dataset`, assembled by `threads` threads into reused buffers.

    `dataset` implements the batch protocol of the store datasets: `batch_layout(batch_size)` ->
    {name: (shape, dtype)} and `fill_batch(keys, out_arrays)` (`ClipDataset`, `EvalClipDataset`).
    `sampler` is any iterable of keys (e.g. `ShardLocalSampler`; call its `set_epoch` before iterating).
    Batches are dicts of tensors, the same as `collate_samples(dataset.__getitems__(keys))`.
    `depth`: how many more batches the consumer may request before a batch handed out with
    `safe=False` is overwritten (module docstring). `prefetch` (default 2 x threads) batches are read
    ahead; the ring holds `depth + prefetch` buffers. `pin_memory` pins the ring (CUDA only).
    `device`: copy every batch there at hand-out (`non_blocking`, pinned ring, fenced slots: module
    docstring); None or "cpu" hands out views of the ring. `transfer` overrides the copy
    (`batch -> (batch, fence or None)`); a slot is refilled only after its last fence's `synchronize()`.
    Iterating again (next epoch) reuses the threads, the per-thread dataset copies and the buffers;
    starting a new pass stops an unfinished one. `close()` (or `with`) stops the threads.
    """

    def __init__(self, dataset: Any, batch_size: int, sampler: Iterable[Any] | None = None, *, threads: int = 2,
                 depth: int = 2, prefetch: int | None = None, pin_memory: bool = False, safe: bool = True,
                 drop_last: bool = False, device: torch.device | str | None = None,
                 transfer: Transfer | None = None) -> None:
        if not (hasattr(dataset, "batch_layout") and hasattr(dataset, "fill_batch")):
            raise TypeError(f"{type(dataset).__name__} does not implement batch_layout()/fill_batch(); "
                            "ThreadedLoader needs the store datasets' batch protocol")
        if batch_size < 1 or threads < 1 or depth < 1:
            raise ValueError(f"batch_size, threads and depth must be >= 1 (got {batch_size}, {threads}, {depth})")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.sampler = sampler if sampler is not None else range(len(dataset))
        self.threads, self.depth = int(threads), int(depth)
        self.prefetch = int(prefetch) if prefetch is not None else 2 * self.threads
        if self.prefetch < 1:
            raise ValueError("prefetch must be >= 1")
        self.device = torch.device(device) if device is not None else None
        self._transfer = transfer if transfer is not None else (
            device_transfer(self.device) if self.device is not None else None)
        if self.device is not None and self.device.type == "cuda":
            pin_memory = True  # asynchronous copies need page-locked source buffers
        if pin_memory and not torch.cuda.is_available():
            log.warning("ThreadedLoader: pin_memory=True but CUDA is not available; buffers are not pinned")
            pin_memory = False
        self.pin_memory, self.safe, self.drop_last = pin_memory, safe, drop_last
        self._proto = pickle.dumps(dataset)  # each thread unpickles its own copy (no shared handles/caches)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._ring: list[tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]] | None = None
        self._epoch: _Epoch | None = None
        self._fences: list[Any] = []  # per ring slot: the fence of its last hand-out copy (or None)

    # -- lifecycle ------------------------------------------------------------------------------
    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def close(self) -> None:
        """Stop the current pass and the threads (idempotent). The loader can be iterated again later."""
        if self._epoch is not None:
            self._epoch.close()
            self._epoch = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for i, fence in enumerate(self._fences):  # copies still reading the ring finish before it may go
            if fence is not None:
                fence.synchronize()
                self._fences[i] = None

    def __enter__(self) -> ThreadedLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass

    # -- work -----------------------------------------------------------------------------------
    def _dataset(self) -> Any:
        ds = getattr(self._local, "dataset", None)
        if ds is None:
            ds = self._local.dataset = pickle.loads(self._proto)
        return ds

    def _job(self, slot: int, keys: list[Any]) -> int:
        fence = self._fences[slot]
        if fence is not None:  # the hand-out copy of this slot's previous batch must have finished
            fence.synchronize()
            self._fences[slot] = None
        arrays = self._ring[slot][1]  # type: ignore[index]
        n = len(keys)
        self._dataset().fill_batch(keys, arrays if n == self.batch_size else {k: a[:n] for k, a in arrays.items()})
        return n

    def _key_batches(self) -> Iterator[list[Any]]:
        batch: list[Any] = []
        for key in self.sampler:
            batch.append(key)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._epoch is not None:  # a new pass stops the previous one before its buffers are reused
            self._epoch.close()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="csvr-loader")
        if self._ring is None:
            layout = self.dataset.batch_layout(self.batch_size)
            self._ring = []
            for _ in range(self.depth + self.prefetch):
                tensors = _ring_buffer(layout, self.pin_memory)
                self._ring.append((tensors, {k: t.numpy() for k, t in tensors.items()}))
            self._fences = [None] * len(self._ring)
        epoch = self._epoch = _Epoch()
        return self._run(epoch)

    def _run(self, epoch: _Epoch) -> Iterator[dict[str, torch.Tensor]]:
        ring, pool = self._ring, self._pool
        assert ring is not None and pool is not None
        size = len(ring)
        batches = self._key_batches()
        submitted = handed = 0
        exhausted = False
        try:
            while True:
                if epoch.closed:  # a newer pass (or close()) owns the buffers now: submit nothing more
                    return
                # job j fills slot j % size; it may start once the consumer asks for batch j - prefetch,
                # i.e. after `depth` requests since batch j - size (same slot) was handed out
                while not exhausted and submitted <= handed + self.prefetch:
                    keys = next(batches, None)
                    if keys is None:
                        exhausted = True
                        break
                    epoch.pending.append(pool.submit(self._job, submitted % size, keys))
                    submitted += 1
                if not epoch.pending:
                    return
                n = epoch.pending.popleft().result()
                slot = handed % size
                tensors = ring[slot][0]
                batch = {k: (t if n == self.batch_size else t[:n]) for k, t in tensors.items()}
                if self._transfer is not None:  # a copy (to the device): the slot is fenced until it is done
                    batch, self._fences[slot] = self._transfer(batch)
                elif self.safe:
                    batch = {k: t.clone() for k, t in batch.items()}
                handed += 1
                yield batch
        finally:
            epoch.close()
            if self._epoch is epoch:
                self._epoch = None
