"""`csvr bench loader`: the store loader vs on-the-fly PyAV decoding vs the raw page-cached read limit.

All three rows load the same videos in the same order (one seeded sampler) with the same number of
DataLoader worker processes and the same clip recipe: T frames at stride s from a random start, resized
to the store's frame size (128x171 by default) and randomly cropped to c x c (112) in the worker,
delivered as uint8 (T, c, c, 3) batches to the main process.

1. `store`: `ClipDataset` over the Zarr store (no future clip, no I-frames, no poses: the plain
   recipe), cropped in the worker (`ClipSpec.crop`), batches assembled by `__getitems__` into one
   shared-memory buffer.
2. `pyav` (the primary baseline: the store's own source videos): the mmaction2/pytorchvideo way: open
   the source video, seek to the key frame before the start, decode to the last needed frame,
   convert+resize the needed frames with swscale, crop. One decoder thread per worker.
   Optionally `pyav_1i`: the same over single-I-frame encodes of the same videos (like most UCF101 files).
3. `raw`: the same stored frames copied once into an uncompressed .npy, page-cached, read by memmap
   slices straight into the same kind of batch buffer: what a loader could do with zero decode cost.
Threaded rows (`store_threads`, `pyav_threads`, `pyav_1i_threads`, `raw_threads`, and with reused
buffers `store_threads_reuse`, `raw_threads_reuse`): the same datasets through `ThreadedLoader`, N
threads in the main process (N = the worker count of the other rows), no inter-process transport.
The headline ratios take the best store row over the best row of each baseline, in either mode.
Optionally `store_full` (the complete CSVR sample: clip + future clip + poses + I-frames, uncropped),
`store_full_crop` (the same cropped in the worker) and `store_per_item` (the store row without batched assembly).

Training-path rows (default on): `training_path` is the training input itself (`ResumableBatches` as
`csvr pretrain` builds it, full CSVR sample, crop drawn in the reader), next to `bare_copy_full` (the
physical limit: as many bytes per sample as the training batch holds, copied by numpy in one contiguous
chunk per sample from a random offset of the page-cached uncompressed frame copy into reused buffers, by
as many threads), `raw_full` (the same sampling code with zero-cost reads: the same samples through the
same stream with frames and I-frames from uncompressed page-cached memmaps; not a limit),
`training_path_processes` (its DataLoader alternative) and `training_path_before` (the input before it
read through `ThreadedLoader`); JSON `training_path_full_samples_per_s`, `bare_copy_full_samples_per_s`,
`training_path_vs_bare_copy` (the headline ratio), `raw_full_samples_per_s`, `training_path_vs_raw_full`.

Video decoding here exists only as the benchmark's baseline (and to build a bench store from videos
when no preprocessed store exists); the training input itself never decodes video.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler

from csvr.cli import json_option, write_json

from csvr.train.data.dataset import ClipDataset, SampleBatch, _alloc_batch, collate_samples, sample_seed
from csvr.train.data.loading import make_loader
from csvr.train.data.sampling import ClipSpec
from csvr.train.data.store import StoreReader
from csvr.train.data.threaded import ThreadedLoader

log = logging.getLogger(__name__)


def _crop(frames: np.ndarray, rng: np.random.Generator, c: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    return np.ascontiguousarray(frames[:, y:y + c, x:x + c])


class StoreBench(Dataset):
    """Row 1: clips from the store via `ClipDataset`, cropped in the worker (`ClipSpec.crop`), whole
    batches assembled by `ClipDataset.__getitems__` into one shared buffer. `full=True`: the complete
    CSVR sample (future clip, poses, I-frames) at the stored size, as training reads it."""

    def __init__(self, reader: StoreReader, videos: np.ndarray, spec: ClipSpec, crop: int, full: bool = False,
                 full_crop: bool = False):
        if full:
            spec = replace(spec, crop=crop if full_crop else None, poses=True)
        else:
            spec = replace(spec, crop=crop, poses=False)
        self.ds = ClipDataset(reader, split=None, spec=spec)
        pos = {int(v): i for i, v in enumerate(self.ds.videos)}
        self.items = [pos[int(v)] for v in videos]
        self.full = full

    def __len__(self) -> int:
        return len(self.items)

    def _key(self, i: int) -> tuple[int, int]:
        return self.items[i], sample_seed(0, 0, i)

    def __getitem__(self, i: int) -> Any:
        s = self.ds[self._key(i)]
        return s if self.full else s["clip"]

    def __getitems__(self, indices: list[int]) -> SampleBatch:
        return self.ds.__getitems__([self._key(i) for i in indices])

    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return self.ds.batch_layout(batch_size)

    def fill_batch(self, indices: list[int], out: dict[str, np.ndarray]) -> None:
        """The threaded rows: the same samples written into `ThreadedLoader`'s reused buffers."""
        self.ds.fill_batch([self._key(i) for i in indices], out)


class StoreBenchPerItem(StoreBench):
    """Row 1 without batched assembly: one `ClipDataset[i]` per sample, then PyTorch's default collate."""

    __getitems__ = None  # type: ignore[assignment]  # the DataLoader then calls __getitem__ per sample


class PyAVBench(Dataset):
    """Row 2: decode the source video on the fly (seek + decode + resize), as peer codebases load."""

    def __init__(self, paths: list[str], source_frames: list[int], frames: int, stride: int, size: tuple[int, int],
                 crop: int):
        self.paths, self.source_frames = paths, source_frames
        self.frames, self.stride, self.size, self.crop = frames, stride, size, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self._decode(i))

    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {"clip": ((batch_size, self.frames, self.crop, self.crop, 3), torch.uint8)}

    def fill_batch(self, indices: list[int], out: dict[str, np.ndarray]) -> None:
        """The threaded rows: decode each clip and copy it into `ThreadedLoader`'s reused buffer."""
        for b, i in enumerate(indices):
            out["clip"][b] = self._decode(i)

    def _decode(self, i: int) -> np.ndarray:
        import av

        rng = np.random.default_rng(i)
        n = self.source_frames[i]
        span = (self.frames - 1) * self.stride + 1
        start = int(rng.integers(0, max(n - span, 0) + 1))
        wanted = [min(start + k * self.stride, n - 1) for k in range(self.frames)]
        h, w = self.size
        got: dict[int, np.ndarray] = {}
        with av.open(self.paths[i]) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per worker, like the store row (and faster here than AUTO)
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            tb = float(stream.time_base)
            first_pts = stream.start_time or 0
            if start > 0:
                container.seek(int(first_pts + start / rate / tb), stream=stream, backward=True)
            last = wanted[-1]
            for frame in container.decode(stream):
                idx = int(round(((frame.pts or 0) - first_pts) * tb * rate))
                if idx in wanted and idx not in got:
                    got[idx] = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
                if idx >= last:
                    break
        if not got:
            raise RuntimeError(f"{self.paths[i]}: decoded no frames")
        keys = sorted(got)
        # a frame missing after an inexact seek is replaced by the nearest decoded one
        clip = np.stack([got[k] if k in got else got[min(keys, key=lambda q: abs(q - k))] for k in wanted])
        return _crop(clip, rng, self.crop)


class DecordBench(PyAVBench):
    """On-the-fly decoding with decord (mmaction2's default reader): `VideoReader` resized at decode,
    `get_batch` of the clip's frames; the same clip recipe, start and crop as `PyAVBench`."""

    def _decode(self, i: int) -> np.ndarray:
        import decord

        rng = np.random.default_rng(i)
        n = self.source_frames[i]
        span = (self.frames - 1) * self.stride + 1
        start = int(rng.integers(0, max(n - span, 0) + 1))
        h, w = self.size
        vr = decord.VideoReader(self.paths[i], width=w, height=h, num_threads=1)
        last = len(vr) - 1
        clip = vr.get_batch([min(start + k * self.stride, n - 1, last) for k in range(self.frames)]).asnumpy()
        return _crop(clip, rng, self.crop)


class TorchCodecBench(PyAVBench):
    """On-the-fly decoding with TorchCodec (PyTorch's decoder) on CPU, frames resized with antialiasing."""

    def _decode(self, i: int) -> np.ndarray:
        from torchcodec.decoders import VideoDecoder

        rng = np.random.default_rng(i)
        n = self.source_frames[i]
        span = (self.frames - 1) * self.stride + 1
        start = int(rng.integers(0, max(n - span, 0) + 1))
        dec = VideoDecoder(self.paths[i], device="cpu", num_ffmpeg_threads=1)
        last = (dec.metadata.num_frames or n) - 1
        frames = dec.get_frames_at([min(start + k * self.stride, n - 1, last) for k in range(self.frames)]).data
        frames = torch.nn.functional.interpolate(frames.float(), size=self.size, mode="bilinear", antialias=True)
        clip = frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return _crop(clip, rng, self.crop)


def decoder_available(name: str) -> str | None:
    """None when the optional decoder `name` (decord, torchcodec) imports and runs here, else why not."""
    try:
        if name == "decord":
            import decord  # noqa: F401
        else:
            from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- ImportError, or OSError from a wheel built for another platform
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


ON_THE_FLY = {"decord": DecordBench, "torchcodec": TorchCodecBench}


class RawBench(Dataset):
    """Row 3: the same stored frames from an uncompressed, page-cached memmap."""

    def __init__(self, path: str, starts: np.ndarray, lengths: np.ndarray, frames: int, stride: int, crop: int):
        self.path, self.starts, self.lengths = path, starts, lengths
        self.frames, self.stride, self.crop = frames, stride, crop
        self._mm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mm": None}

    def _mmap(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.load(self.path, mmap_mode="r")
        return self._mm

    def _fill(self, out: np.ndarray, i: int) -> None:
        mm = self._mmap()
        rng = np.random.default_rng(i)
        n = int(self.lengths[i])
        span = (self.frames - 1) * self.stride + 1
        start = int(rng.integers(0, max(n - span, 0) + 1))
        rows = (self.starts[i] + np.minimum(start + np.arange(self.frames) * self.stride, n - 1)).tolist()
        h, w = mm.shape[1:3]
        c = self.crop
        y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        for k, r in enumerate(rows):  # straight from the page cache into the batch buffer
            out[k] = mm[r, y:y + c, x:x + c]

    def __getitem__(self, i: int) -> torch.Tensor:
        out = np.empty((self.frames, self.crop, self.crop, 3), np.uint8)
        self._fill(out, i)
        return torch.from_numpy(out)

    def __getitems__(self, indices: list[int]) -> SampleBatch:
        """The same batched assembly as the store row: one shared buffer per batch."""
        batch = _alloc_batch({"clip": ((len(indices), self.frames, self.crop, self.crop, 3), torch.uint8)})
        arr = batch["clip"].numpy()
        for b, i in enumerate(indices):
            self._fill(arr[b], i)
        return SampleBatch(batch)

    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {"clip": ((batch_size, self.frames, self.crop, self.crop, 3), torch.uint8)}

    def fill_batch(self, indices: list[int], out: dict[str, np.ndarray]) -> None:
        """The threaded rows: memmap slices straight into `ThreadedLoader`'s reused buffer."""
        for b, i in enumerate(indices):
            self._fill(out["clip"][b], i)


def time_loader(dataset: Dataset, *, workers: int, batch_size: int, batches: int, warmup: int | None = None,
                seed: int = 0) -> dict[str, float]:
    """Steady-state clips/s of a DataLoader over `dataset` (worker start-up excluded).

    The default warmup consumes more batches than the prefetch queue holds (workers x prefetch + 2), so
    the timed batches are produced while timing, not during the start-up head start.
    """
    prefetch = 4
    if warmup is None:
        warmup = workers * prefetch + 2
    n = (batches + warmup) * batch_size
    sampler = RandomSampler(dataset, replacement=True, num_samples=n, generator=torch.Generator().manual_seed(seed))
    loader = make_loader(dataset, batch_size, sampler=sampler, workers=workers, collate_fn=collate_samples,
                         persistent=True, pin_memory=torch.cuda.is_available(), prefetch=prefetch, drop_last=True)
    try:
        return _steady_rate(iter(loader), warmup, batches)
    finally:
        del loader


def _steady_rate(it, warmup: int, batches: int) -> dict[str, float]:
    """Clips/s over `batches` batches of iterator `it`, after `warmup` untimed ones."""
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    count = 0
    for _ in range(batches):
        b = next(it)
        count += len(b["clip"]) if isinstance(b, dict) else len(b)
    dt = time.perf_counter() - t0
    return {"clips": count, "seconds": dt, "clips_per_s": count / dt}


def time_threaded(dataset: Dataset, *, threads: int, batch_size: int, batches: int, warmup: int | None = None,
                  seed: int = 0, safe: bool = True) -> dict[str, float]:
    """Steady-state clips/s of a `ThreadedLoader` over `dataset`: `threads` threads in this process fill
    reused batch buffers (no inter-process transport); same sampler and warm-up rule as `time_loader`."""
    prefetch = 2 * threads
    if warmup is None:
        warmup = prefetch + 2
    n = (batches + warmup) * batch_size
    sampler = RandomSampler(dataset, replacement=True, num_samples=n, generator=torch.Generator().manual_seed(seed))
    loader = ThreadedLoader(dataset, batch_size, sampler, threads=threads, depth=2, prefetch=prefetch,
                            pin_memory=torch.cuda.is_available() and not safe, safe=safe, drop_last=True)
    try:
        return _steady_rate(iter(loader), warmup, batches)
    finally:
        loader.close()


# ----------------------------------------------------------------------------- the training path rows
DEFAULT_TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "ucf101_r2plus1d_18.yaml"


class _MemmapReader:
    """A `StoreReader` whose `frames` and `iframes/images` rows come from uncompressed, page-cached .npy
    copies (memmap slices straight into the batch buffers); everything else (video table, I-frame index,
    poses) is the real reader's. Pickles without its maps, like the reader."""

    def __init__(self, reader: StoreReader, paths: dict[str, str], maps: dict[str, np.ndarray]) -> None:
        self._inner, self._paths = reader, paths
        self._maps = {k: m.tolist() for k, m in maps.items()}  # plain ints: no numpy scalar per row
        self._mm: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mm": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def read_rows_into(self, name: str, rows: Any, out: np.ndarray, window: Any = None) -> None:
        mm = self._mm.get(name)
        if mm is None:
            mm = self._mm[name] = np.load(self._paths[name], mmap_mode="r")
        rows_map = self._maps[name]
        for k, r in enumerate(rows):
            src = mm[rows_map[r]]
            out[k] = src if window is None else src[window]


def build_raw_full_copy(reader: StoreReader, videos: np.ndarray, folder: Path) -> tuple[dict[str, str], dict]:
    """Uncompressed, page-cached copies of the frames and I-frame images of `videos`, and per array a map
    from store row to copy row (-1 elsewhere)."""
    v = reader.videos
    spans = {"frames": (v["frame_start"][videos], v["num_frames"][videos]),
             "iframes/images": (v["iframe_start"][videos], v["num_iframes"][videos])}
    paths, maps = {}, {}
    for name, (starts, counts) in spans.items():
        arr = reader.array(name)
        total = int(np.sum(counts))
        path = folder / (name.replace("/", "_") + ".npy")
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(max(total, 1), *arr.shape[1:]))
        rows_map = np.full(arr.shape[0], -1, np.int64)
        at = 0
        for s, n in zip(starts.tolist(), counts.tolist()):
            if n:
                mm[at:at + n] = arr[s:s + n]
                rows_map[s:s + n] = np.arange(at, at + n)
            at += n
        mm.flush()
        del mm
        with open(path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        paths[name], maps[name] = str(path), rows_map
    return paths, maps


def _restrict(ds: ClipDataset, videos: np.ndarray) -> ClipDataset:
    keep = np.isin(ds.videos, videos)
    ds.videos, ds.labels = ds.videos[keep], ds.labels[keep]
    return ds


def training_path_data(store: str, videos: np.ndarray, *, frames: int, stride: int, crop: int, workers: int,
                       device: torch.device, config: Path | None = None, overrides: tuple[str, ...] = ()):
    """The pretraining config, dataset and sampler exactly as `csvr pretrain` builds them
    (`train.pretrain.build_data`, every key of the full CSVR sample, crop in the reader), over `videos`
    (the bench's selection; pretraining takes its split's videos, which changes which samples, not how
    they are read)."""
    from csvr.train.config import PretrainConfig, load_config
    from csvr.train.distributed import DistInfo
    from csvr.train.pretrain import build_data

    from csvr.train.data.sampler import ShardLocalSampler

    over = (f"data.frames={frames}", f"data.stride={stride}", f"data.crop={crop}", f"data.num_workers={workers}",
            *overrides)
    cfg = load_config(PretrainConfig, config or DEFAULT_TRAIN_CONFIG, over)
    ds, _, _ = build_data(cfg, store, DistInfo(device=device), split=None, stage=None)
    ds = _restrict(ds, videos)

    def sampler_for(d: ClipDataset) -> ShardLocalSampler:  # the arguments build_data uses
        return ShardLocalSampler(d, num_replicas=1, rank=0, shuffle=True, seed=cfg.run.seed, drop_last=True)

    return cfg, ds, sampler_for


class _BeforeBatches:
    """The training input before it read through `ThreadedLoader`: a `DataLoader` without
    `collate_fn` (the batch `__getitems__` assembled is re-collated per sample by default_collate) over
    samples without the reader-side crop. For comparison only."""

    def __init__(self, ds: ClipDataset, sampler: Any, batch_size: int, workers: int, seed: int, epoch: int):
        self.ds, self.sampler, self.batch_size, self.workers, self.seed, self.epoch = \
            ds, sampler, batch_size, workers, seed, epoch

    def __iter__(self):
        from csvr.train.loop import _EndlessKeys

        self.sampler.set_epoch(self.epoch)
        n = len(list(iter(self.sampler))) // self.batch_size
        keys = _EndlessKeys(self.sampler, n * self.batch_size, self.epoch, 0)
        return iter(make_loader(self.ds, self.batch_size, sampler=keys, workers=self.workers,
                                pin_memory=torch.cuda.is_available(), seed=self.seed, prefetch=4))


def time_stream(make: Any, *, batches: int, warmup: int, seed: int) -> dict[str, float]:
    """Steady-state samples/s of an endless batch stream `make(seed)` (a `ResumableBatches`): the same
    warm-up rule as the other rows (more batches than any prefetch holds)."""
    it = iter(make(seed))
    try:
        return _steady_rate(it, warmup, batches)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class BareCopy:
    """The `bare_copy_full` row: the memory-bandwidth limit of a full sample. Per sample, `sample_bytes`
    (what the training batch holds per sample) copied by numpy in one contiguous chunk from a random
    (seeded, 64-byte aligned) offset of an uncompressed, page-cached .npy of the stored frames into a
    reused output buffer; `threads` threads, each filling whole batches. No sampling code at all."""

    def __init__(self, path: str, sample_bytes: int, threads: int) -> None:
        self.path, self.sample_bytes, self.threads = path, int(sample_bytes), max(1, int(threads))
        self._flat: np.ndarray | None = None

    def flat(self) -> np.ndarray:
        """The copy as flat bytes, every page mapped once (no page faults in the timed copies)."""
        if self._flat is None:
            flat = np.load(self.path, mmap_mode="r").reshape(-1)
            int(flat[::4096].sum())  # touch every page of the mapping
            self._flat = flat
        return self._flat


def _copy_sample(flat: np.ndarray, off: int, out: np.ndarray) -> None:
    n, total = out.size, flat.size
    if off + n <= total:
        np.copyto(out, flat[off:off + n])  # numpy releases the GIL for the copy
        return
    at = 0  # a copy smaller than one sample (tiny stores): wrap around
    while at < n:
        k = min(n - at, total - off)
        np.copyto(out[at:at + k], flat[off:off + k])
        at, off = at + k, 0


def time_bare_copy(bare: BareCopy, *, batch_size: int, batches: int, warmup: int, seed: int) -> dict[str, float]:
    """Samples/s of `bare.threads` threads copying `bare.sample_bytes` per sample into reused per-thread
    batch buffers; `warmup` untimed batches first (same rule as the stream rows), then `batches` timed."""
    from concurrent.futures import ThreadPoolExecutor

    flat, sb, nt = bare.flat(), bare.sample_bytes, bare.threads
    outs = [np.zeros((batch_size, sb), np.uint8) for _ in range(nt)]  # reused, touched before timing
    rng = np.random.default_rng(seed)
    hi = max(flat.size - sb, 0)
    offs = (rng.integers(0, hi + 1, size=(warmup + batches) * batch_size) // 64 * 64).tolist()

    def fill(first: int, count: int):
        def work(t: int) -> None:
            out = outs[t]
            for j in range(first + t, first + count, nt):  # batch j -> thread j % threads
                for b in range(batch_size):
                    _copy_sample(flat, offs[j * batch_size + b], out[b])
        return work

    with ThreadPoolExecutor(nt) as pool:
        list(pool.map(fill(0, warmup), range(nt)))
        t0 = time.perf_counter()
        list(pool.map(fill(warmup, batches), range(nt)))
        dt = time.perf_counter() - t0
    count = batches * batch_size
    return {"clips": count, "seconds": dt, "clips_per_s": count / dt}


def build_raw_copy(reader: StoreReader, videos: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Copy the chosen videos' stored frames into an uncompressed .npy and page-cache it."""
    lengths = reader.videos["num_frames"][videos].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    h, w = reader.frame_size
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(lengths.sum()), h, w, 3))
    for v, s, n in zip(videos, starts, lengths):
        fs = int(reader.videos["frame_start"][v])
        mm[s:s + n] = reader.array("frames")[fs:fs + int(n)]
    mm.flush()
    del mm
    with open(path, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    return starts, lengths


def resolve_video_paths(reader: StoreReader, videos: np.ndarray, video_root: Path | None) -> list[str]:
    """Source paths of `videos`: `--video-root`, else the store's recorded dataset root."""
    opts = reader.attrs.get("options") or {}
    keys = ("root", "dataset_root", "source_root")
    recorded = [opts.get(k) for k in keys] + [reader.attrs.get(k) for k in keys]
    root = video_root or next((Path(str(r)) for r in recorded if r), None)
    if root is None:
        raise click.UsageError(f"store {reader.path} records no dataset root in attrs['options']; pass --video-root")
    paths = [str(root / str(reader.videos["path"][v])) for v in videos]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise click.UsageError(f"{len(missing)} source videos not found under {root} (first: {missing[0]}); "
                               "pass --video-root DIR or --skip-pyav")
    return paths


def _training_path_rows(store: str, reader: StoreReader, videos: np.ndarray, tmp: Path, *, frames: int, stride: int,
                        crop: int, workers: int, batch_size: int, train_config: Path | None,
                        raw_path: Path | None = None):
    """(name, make(round) -> stream, extra) for the training-path rows, and the full sample's recipe.
    `bare_copy_full` has mode "bare" and a `BareCopy` in place of `make`; it copies from `raw_path` (the
    bench's uncompressed frame copy; built from the rows' videos when None)."""
    from csvr.train.loop import Position, ResumableBatches

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    cfg, ds, sampler_for = training_path_data(store, videos, frames=frames, stride=stride, crop=crop,
                                              workers=workers, device=device, config=train_config)
    paths, maps = build_raw_full_copy(reader, ds.videos, tmp)
    raw = _restrict(ClipDataset(reader, split=None, spec=ds.spec), ds.videos)
    raw.reader = _MemmapReader(reader, paths, maps)
    before = _restrict(ClipDataset(reader, split=None, spec=replace(ds.spec, crop=None)), ds.videos)
    seed = cfg.run.seed

    def stream(d: ClipDataset, loader: str | None = None):
        sampler = sampler_for(d)

        def make(rnd: int) -> ResumableBatches:  # as run_stage builds it; round r starts at epoch r
            kw = {} if loader is None else {"loader": loader}
            return ResumableBatches(d, sampler, batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                                    seed=seed, position=Position(rnd, 0), device=device, **kw)
        return make

    default = ResumableBatches(ds, sampler_for(ds), batch_size, num_workers=workers, pin_memory=False, seed=seed)
    before_sampler = sampler_for(before)
    spec = ds.spec
    sample_bytes = layout_bytes_per_sample(ds, batch_size)
    common = {"mode": "stream", "workers": workers, "videos": int(len(ds.videos)), "bytes_per_sample": sample_bytes}
    if raw_path is None:
        raw_path = tmp / "bare_frames.npy"
        build_raw_copy(reader, ds.videos, raw_path)
    threads = max(1, workers)  # ResumableBatches' thread count
    rows = [
        ("training_path", stream(ds), {**common, "loader": default.loader,
                                       "note": "ResumableBatches as csvr pretrain builds it (its default loader)"}),
        ("training_path_processes", stream(ds, "processes"),
         {**common, "loader": "processes", "note": "the same, DataLoader worker processes + collate_samples"}),
        ("training_path_before", lambda rnd: _BeforeBatches(before, before_sampler, batch_size, workers, seed, rnd),
         {**common, "loader": "processes-default-collate",
          "note": "the training input before this loader: DataLoader, default_collate, no reader-side crop"}),
        ("bare_copy_full", BareCopy(str(raw_path), sample_bytes, threads),
         {**common, "mode": "bare", "threads": threads,
          "note": "the memory-bandwidth limit: bytes_per_sample copied by numpy per sample, one contiguous chunk "
                  "from a random offset of the page-cached uncompressed frame copy, reused buffers, same threads"}),
        ("raw_full", stream(raw), {**common, "loader": default.loader,
                                   "note": "the same sampling code with zero-cost reads: the same samples and "
                                           "stream, frames + I-frames from uncompressed page-cached memmaps "
                                           "(no store reads); not a limit"}),
    ]
    recipe = {"frames": spec.frames, "future_frames": spec.future_frames, "stride": spec.stride,
              "max_iframes": spec.max_iframes, "crop": spec.crop, "poses": spec.poses,
              "config": str(train_config or DEFAULT_TRAIN_CONFIG),
              "bytes_per_sample": sample_bytes}
    return rows, recipe


def layout_bytes_per_sample(ds: Any, batch_size: int) -> int:
    """Bytes per sample of the batches `ds` delivers: the nbytes of its `batch_layout` tensors / batch size."""
    total = sum(int(np.prod(shape)) * torch.empty(0, dtype=dt).element_size()
                for shape, dt in ds.batch_layout(batch_size).values())
    return total // batch_size


def _training_path_summary(rows: dict, runs: dict, recipe: dict | None, best: dict) -> dict[str, Any]:
    """The training-path JSON keys (None when the rows were not run)."""
    if recipe is None or "training_path" not in rows:
        return {"training_path_full_samples_per_s": None}
    tp, raw = rows["training_path"]["clips_per_s"], rows["raw_full"]["clips_per_s"]
    bare = rows["bare_copy_full"]["clips_per_s"]
    out: dict[str, Any] = {
        "full_sample_recipe": recipe,
        "training_path_full_samples_per_s": tp,
        "training_path_loader": rows["training_path"]["loader"],
        # the headline ratio: to the physical limit (a bare memory copy of the same bytes per sample)
        "bare_copy_full_samples_per_s": bare,
        "bare_copy_full_bytes_per_sample": rows["bare_copy_full"]["bytes_per_sample"],
        "bare_copy_full_gb_per_s": rows["bare_copy_full"]["mb_per_s"] / 1e3,
        "training_path_vs_bare_copy": tp / bare,
        "training_path_vs_bare_copy_per_round": [a["clips_per_s"] / b["clips_per_s"]
                                                 for a, b in zip(runs["training_path"], runs["bare_copy_full"])],
        "raw_full_samples_per_s": raw,
        "training_path_vs_raw_full": tp / raw,
        "training_path_vs_raw_full_per_round": [a["clips_per_s"] / b["clips_per_s"]
                                                for a, b in zip(runs["training_path"], runs["raw_full"])],
        "training_path_processes_full_samples_per_s": rows["training_path_processes"]["clips_per_s"],
        "training_path_before_full_samples_per_s": rows["training_path_before"]["clips_per_s"],
        "training_path_vs_before": tp / rows["training_path_before"]["clips_per_s"],
        "training_path_vs_raw_full_target": 0.6,
    }
    # on-the-fly decoders decode the clip only (16 frames), not the full sample
    for fam in ("pyav", "pyav_1i", *ON_THE_FLY):
        if fam in best:
            out[f"training_path_full_vs_{fam}_clip"] = tp / rows[best[fam]]["clips_per_s"]
    fastest = max((best[d] for d in ("pyav", *ON_THE_FLY) if d in best), key=lambda n: rows[n]["clips_per_s"],
                  default=None)
    if fastest is not None:
        out["training_path_full_vs_fastest_decoder_clip"] = tp / rows[fastest]["clips_per_s"]
    return out


def run_bench(store: str, *, workers: int = 2, batches: int = 20, batch_size: int = 8, max_videos: int = 64,
              frames: int = 16, stride: int = 4, crop: int = 112, video_root: Path | None = None,
              skip_pyav: bool = False, full_sample: bool = False, read_modes: tuple[str, ...] = ("auto",),
              gpu_clips_per_s: float = 100.0, raw_dir: Path | None = None, pyav_batches: int | None = None,
              repeats: int = 3, per_item: bool = False, pyav_single_iframe_root: Path | None = None,
              threads: int | None = None, thread_reuse: bool = True, training_path: bool = True,
              train_config: Path | None = None) -> dict:
    """Run the rows and return the result dict written as JSON.

    `training_path` adds the rows of the training input itself (`ResumableBatches` as `csvr pretrain`
    builds it, the full CSVR sample of `train_config`): `training_path` (its default loader),
    `training_path_processes` (its DataLoader alternative), `training_path_before` (the input before it
    read through `ThreadedLoader`), `bare_copy_full` (the memory-bandwidth limit: the training batch's
    bytes per sample copied by numpy from random offsets of the page-cached raw frame copy, same threads)
    and `raw_full` (the same sampling code with zero-cost reads: the same samples through the same stream,
    frames and I-frames read from uncompressed page-cached memmaps; not a limit).

    `threads` (default: `workers`, at least 1; 0 = none) adds the threaded rows `store_threads`,
    `raw_threads`, `pyav_threads` (and `pyav_1i_threads`, `store_full_crop_threads`): the same datasets
    through `ThreadedLoader` in this process, cloning each batch on hand-out (`safe=True`);
    `thread_reuse` adds `store_threads_reuse` and `raw_threads_reuse` (reused buffers, `safe=False`).
    """
    threads = max(workers, 1) if threads is None else threads
    reader, videos, spec = _bench_videos(store, max_videos, frames, stride)
    h, w = reader.frame_size
    step = reader.frame_step
    clip_bytes = frames * h * w * 3
    plan, threaded, decoders_skipped = _decoder_rows(
        store, reader, videos, spec, crop, read_modes=read_modes, batches=batches, per_item=per_item,
        full_sample=full_sample, skip_pyav=skip_pyav, video_root=video_root, pyav_batches=pyav_batches,
        pyav_single_iframe_root=pyav_single_iframe_root, frames=frames, stride=stride, threads=threads,
        thread_reuse=thread_reuse)
    with tempfile.TemporaryDirectory(dir=raw_dir) as tmp:
        raw_path = Path(tmp) / "raw_frames.npy"
        starts, lengths = build_raw_copy(reader, videos, raw_path)
        plan.append(("raw", RawBench(str(raw_path), starts, lengths, frames, max(1, stride // step), crop), batches, {}))
        _add_threaded(threaded, threads, thread_reuse, "raw", plan[-1][1], batches, {}, reuse=True)
        plan = [(n, d, b, {"mode": "processes", "workers": workers, **e}) for n, d, b, e in plan] + threaded
        full_recipe = None
        if training_path:
            streams, full_recipe = _training_path_rows(store, reader, videos, Path(tmp), frames=frames, stride=stride,
                                                       crop=crop, workers=workers, batch_size=batch_size,
                                                       train_config=train_config, raw_path=raw_path)
            plan += [(n, make, batches, extra) for n, make, extra in streams]
        runs = _time_rows(plan, repeats=repeats, batches=batches, batch_size=batch_size, workers=workers,
                          threads=threads)
    rows = _median_rows(plan, runs, clip_bytes)
    best, by_mode = _best_rows(rows)

    def ratio(a: str, b: str) -> float | None:
        return rows[best[a]]["clips_per_s"] / rows[best[b]]["clips_per_s"] if a in best and b in best else None

    store_cps = rows["store"]["clips_per_s"]
    per_process = store_cps / max(workers, 1)
    frames_arr = reader.array("frames")
    result: dict[str, Any] = {
        "store": str(store),
        "videos": int(len(videos)),
        "recipe": {"frames": frames, "stride": stride, "frame_size": [h, w], "crop": crop,
                   "bytes_per_clip": clip_bytes},
        "workers": workers, "batch_size": batch_size, "batches": batches, "repeats": repeats,
        "store_layout": {"chunks": list(frames_arr.chunks), "shards": list(frames_arr.shards or []),
                         "compressors": [str(c) for c in (frames_arr.compressors or ())]},
        "rows": rows,
        # headline ratios: the best store row over the best row of each baseline, whatever the loading
        # mode (processes or threads); `ratio_rows` names the rows used, `ratios_by_mode` has the rest
        "ratio_vs_pyav": ratio("store", "pyav"),
        "ratio_vs_pyav_single_iframe": ratio("store", "pyav_1i"),
        "ratio_vs_raw": ratio("store", "raw"),
        "ratio_rows": {fam: best[fam] for fam in best},
        # the fastest on-the-fly decoder (PyAV, decord, TorchCodec: best loading mode of each) and why any is missing
        "fastest_on_the_fly": max((best[d] for d in ("pyav", *ON_THE_FLY) if d in best),
                                  key=lambda n: rows[n]["clips_per_s"], default=None),
        "decoders_skipped": decoders_skipped,
        "ratios_by_mode": by_mode,
        "targets": {"ratio_vs_pyav": 30.0, "ratio_vs_raw": 0.5},
        # the rows of one round ran back to back, so per-round ratios cancel some of the shared-machine noise
        "ratio_per_round": {other: [a["clips_per_s"] / b["clips_per_s"]
                                    for a, b in zip(runs[best["store"]], runs[best[other]])]
                            for other in ("pyav", "pyav_1i", "raw") if other in best},
        "gpu_clips_per_s": gpu_clips_per_s,
        "store_clips_per_s_per_worker": per_process,
        "gpus_fed_per_loader_process": per_process / gpu_clips_per_s,
        "gpus_fed_by_all_workers": store_cps / gpu_clips_per_s,
        "threads": threads,
        "gpus_fed_by_threaded_loader": (max(rows[n]["clips_per_s"] for n in ("store_threads", "store_threads_reuse")
                                            if n in rows) / gpu_clips_per_s if "store_threads" in rows else None),
        "gpus_fed_per_loader_process_full_sample": (rows["store_full"]["clips_per_s"] / max(workers, 1) / gpu_clips_per_s
                                                    if "store_full" in rows else None),
        "gpus_fed_per_loader_process_full_sample_cropped": (
            rows["store_full_crop"]["clips_per_s"] / max(workers, 1) / gpu_clips_per_s
            if "store_full_crop" in rows else None),
        "sharing_strategy": torch.multiprocessing.get_sharing_strategy(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result.update(_training_path_summary(rows, runs, full_recipe, best))
    _print_headline(result, rows, best, by_mode, workers, gpu_clips_per_s)
    return result


def _bench_videos(store: str, max_videos: int, frames: int, stride: int) -> tuple[StoreReader, np.ndarray, ClipSpec]:
    """The store's reader, up to `max_videos` readable videos spread over it, and the bare clip recipe."""
    reader = StoreReader(store)
    ok = reader.videos.rows_in_split(None)
    step = reader.frame_step
    if step != 1:
        log.warning("store keeps every %d-th frame; the PyAV row still decodes every source frame", step)
    videos = ok[np.linspace(0, len(ok) - 1, min(max_videos, len(ok))).round().astype(np.int64)] if len(ok) else ok
    videos = np.unique(videos)
    if len(videos) == 0:
        raise click.UsageError(f"store {store} has no readable videos")
    return reader, videos, ClipSpec(frames=frames, stride=stride, future_frames=0, max_iframes=0)


def _add_threaded(threaded: list, threads: int, thread_reuse: bool, name: str, ds: Dataset, nb: int,
                  extra: dict[str, Any], reuse: bool = False) -> None:
    """The `<name>_threads` row (and `<name>_threads_reuse`) of a dataset, when threads are on."""
    if threads <= 0:
        return
    threaded.append((f"{name}_threads", ds, nb, {**extra, "mode": "threads", "threads": threads, "safe": True}))
    if reuse and thread_reuse:
        threaded.append((f"{name}_threads_reuse", ds, nb,
                         {**extra, "mode": "threads", "threads": threads, "safe": False}))


def _decoder_rows(store: str, reader: StoreReader, videos: np.ndarray, spec: ClipSpec, crop: int, *,
                  read_modes: tuple[str, ...], batches: int, per_item: bool, full_sample: bool, skip_pyav: bool,
                  video_root: Path | None, pyav_batches: int | None, pyav_single_iframe_root: Path | None,
                  frames: int, stride: int, threads: int, thread_reuse: bool) -> tuple[list, list, dict[str, str]]:
    """The store rows and the on-the-fly decoder rows (PyAV, decord, TorchCodec where installed): (process rows,
    threaded rows, {decoder: why skipped})."""
    step = reader.frame_step
    h, w = reader.frame_size
    decoders_skipped: dict[str, str] = {}
    # (name, dataset, timed batches, extra JSON fields); all rows run once per round, rounds interleave
    # the rows so that load from other processes on a shared machine hits every row alike
    plan: list[tuple[str, Dataset, int, dict[str, Any]]] = []
    threaded: list[tuple[str, Dataset, int, dict[str, Any]]] = []

    for mode in read_modes:
        r = StoreReader(store, read_mode="auto", direct=False) if mode == "zarr" else StoreReader(store, read_mode=mode)
        plan.append(("store" if mode == read_modes[0] else f"store_{mode}", StoreBench(r, videos, spec, crop),
                     batches, {"read_mode": mode}))
        if mode == read_modes[0]:
            _add_threaded(threaded, threads, thread_reuse, "store", plan[-1][1], batches, {"read_mode": mode}, reuse=True)
    if per_item:
        plan.append(("store_per_item", StoreBenchPerItem(reader, videos, spec, crop), batches,
                     {"note": "one ClipDataset[i] per sample + default_collate (no batched assembly)"}))
    if full_sample:
        full = ClipSpec(frames=frames, stride=stride)
        plan.append(("store_full", StoreBench(reader, videos, full, crop, full=True), batches,
                     {"note": "clip + future clip + poses + I-frames, uncropped"}))
        plan.append(("store_full_crop", StoreBench(reader, videos, full, crop, full=True, full_crop=True), batches,
                     {"note": "the same, cropped in the worker (ClipSpec.crop; ClipAugment takes it as is)"}))
        _add_threaded(threaded, threads, thread_reuse, "store_full_crop", plan[-1][1], batches, plan[-1][3])
    if not skip_pyav:
        paths = resolve_video_paths(reader, videos, video_root)
        src = [int(reader.videos["source_frames"][v]) if "source_frames" in reader.videos.columns
               else int(reader.videos["num_frames"][v]) * step for v in videos]
        plan.append(("pyav", PyAVBench(paths, src, frames, stride, (h, w), crop),
                     pyav_batches or max(2, batches // 4), {"sources": str(paths[0]).rsplit("/", 2)[0],
                                                            "primary": True}))
        _add_threaded(threaded, threads, thread_reuse, "pyav", *plan[-1][1:])
        for name, cls in ON_THE_FLY.items():  # the decoders users pick instead, when installed
            why = decoder_available(name)
            if why is not None:
                decoders_skipped[name] = why
                click.echo(f"{name}: row skipped ({why})")
                continue
            plan.append((name, cls(paths, src, frames, stride, (h, w), crop), pyav_batches or max(2, batches // 4),
                         {"sources": str(paths[0]).rsplit("/", 2)[0]}))
            _add_threaded(threaded, threads, thread_reuse, name, *plan[-1][1:])
        if pyav_single_iframe_root is not None:
            paths1 = resolve_video_paths(reader, videos, pyav_single_iframe_root)
            plan.append(("pyav_1i", PyAVBench(paths1, src, frames, stride, (h, w), crop),
                         pyav_batches or max(2, batches // 4),
                         {"sources": str(pyav_single_iframe_root), "primary": False,
                          "note": "same videos encoded with a single I-frame (like most UCF101 files)"}))
            _add_threaded(threaded, threads, thread_reuse, "pyav_1i", *plan[-1][1:])
    return plan, threaded, decoders_skipped


def _time_rows(plan: list, *, repeats: int, batches: int, batch_size: int, workers: int,
               threads: int) -> dict[str, list[dict[str, float]]]:
    """Every row once per round, `repeats` rounds; the rounds interleave the rows so that load from other
    processes on a shared machine hits every row alike."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in plan}
    for rnd in range(repeats):
        for name, ds, nb, extra in plan:
            if extra["mode"] == "stream":  # ds: makes the endless stream (starting at epoch `rnd`)
                res = time_stream(ds, batches=nb, warmup=max(workers, 1) * 4 + 2, seed=rnd)
            elif extra["mode"] == "bare":  # ds: a BareCopy (same batches and warm-up as the streams)
                res = time_bare_copy(ds, batch_size=batch_size, batches=nb, warmup=max(workers, 1) * 4 + 2,
                                     seed=rnd)
            elif extra["mode"] == "threads":
                res = time_threaded(ds, threads=threads, batch_size=batch_size, batches=nb, seed=rnd,
                                    safe=extra["safe"])
            else:
                res = time_loader(ds, workers=workers, batch_size=batch_size, batches=nb, seed=rnd)
            runs[name].append(res)
            click.echo(f"[round {rnd + 1}/{repeats}] {name:>22s}: {res['clips_per_s']:9.1f} clips/s")
    return runs


def _median_rows(plan: list, runs: dict[str, list[dict[str, float]]], clip_bytes: int) -> dict[str, dict[str, Any]]:
    """Each row's median rate over the rounds, with its runs and settings."""
    rows: dict[str, dict[str, Any]] = {}
    for name, _, _, extra in plan:
        cps = [r["clips_per_s"] for r in runs[name]]
        med = float(np.median(cps))
        rows[name] = {"clips_per_s": med, "mb_per_s": med * extra.get("bytes_per_sample", clip_bytes) / 1e6,
                      "clips_per_s_runs": cps,
                      "clips_per_run": runs[name][0]["clips"], **extra}
        click.echo(f"{name:>22s}: {med:9.1f} clips/s  {rows[name]['mb_per_s']:8.1f} MB/s  (median of {len(cps)})")

    return rows


def _best_rows(rows: dict[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, dict]]:
    """The fastest loading mode of each family (store, PyAV, ..., raw), and the store's ratios per mode."""
    families = {"store": ("store", "store_threads", "store_threads_reuse"), "pyav": ("pyav", "pyav_threads"),
                "pyav_1i": ("pyav_1i", "pyav_1i_threads"), "raw": ("raw", "raw_threads", "raw_threads_reuse"),
                **{d: (d, f"{d}_threads") for d in ON_THE_FLY}}
    best = {fam: max((n for n in names if n in rows), key=lambda n: rows[n]["clips_per_s"])
            for fam, names in families.items() if any(n in rows for n in names)}

    def mode_ratios(store_row: str, suffix: str, raw_suffix: str) -> dict[str, float | None] | None:
        if store_row not in rows:
            return None
        cps = rows[store_row]["clips_per_s"]
        out: dict[str, float | None] = {"store_row": store_row}  # type: ignore[dict-item]
        for key, base in (("ratio_vs_pyav", "pyav" + suffix), ("ratio_vs_pyav_single_iframe", "pyav_1i" + suffix),
                          ("ratio_vs_raw", "raw" + raw_suffix)):
            out[key] = cps / rows[base]["clips_per_s"] if base in rows else None
        return out

    by_mode = {"processes": mode_ratios("store", "", ""), "threads": mode_ratios("store_threads", "_threads", "_threads"),
               "threads_reuse": mode_ratios("store_threads_reuse", "_threads", "_threads_reuse")}
    by_mode = {k: v for k, v in by_mode.items() if v is not None}
    return best, by_mode


def _print_headline(result: dict, rows: dict, best: dict[str, str], by_mode: dict, workers: int,
                    gpu_clips_per_s: float) -> None:
    """The headline ratios and the training path's rate, on stdout."""
    for mode, r in by_mode.items():
        parts = [f"{k} = {v:.2f}" for k, v in r.items() if k != "store_row" and v is not None]
        click.echo(f"[{mode}] " + ", ".join(parts))
    if result["ratio_vs_pyav"] is not None:
        click.echo(f"ratio_vs_pyav = {result['ratio_vs_pyav']:.1f}x ({best['store']} / {best['pyav']}; target >= 30x; "
                   "primary: the store's own sources)")
    if result["ratio_vs_pyav_single_iframe"] is not None:
        click.echo(f"ratio_vs_pyav_single_iframe = {result['ratio_vs_pyav_single_iframe']:.1f}x "
                   f"({best['store']} / {best['pyav_1i']})")
    click.echo(f"ratio_vs_raw  = {result['ratio_vs_raw']:.2f} ({best['store']} / {best['raw']}; target >= 0.5)")
    if result.get("training_path_full_samples_per_s") is not None:
        click.echo(f"training path (full CSVR sample, {rows['training_path']['loader']}): "
                   f"{result['training_path_full_samples_per_s']:.1f} samples/s = "
                   f"{result['training_path_vs_bare_copy']:.3f} of the bare copy limit "
                   f"({result['bare_copy_full_samples_per_s']:.1f} samples/s, "
                   f"{result['bare_copy_full_gb_per_s']:.2f} GB/s at {result['bare_copy_full_bytes_per_sample']} "
                   f"B/sample); {result['training_path_vs_raw_full']:.2f} of the same sampling code with zero-cost "
                   f"reads (raw_full {result['raw_full_samples_per_s']:.1f}; target >= 0.6); "
                   f"{result['training_path_vs_before']:.2f}x the input before ThreadedLoader")
        if result.get("training_path_full_vs_fastest_decoder_clip") is not None:
            click.echo(f"training path = {result['training_path_full_vs_fastest_decoder_clip']:.1f}x the fastest "
                       f"on-the-fly decoder ({result['fastest_on_the_fly']}, bare 16-frame clips)")
    click.echo(f"one loader process feeds {result['gpus_fed_per_loader_process']:.2f} GPUs at "
               f"{gpu_clips_per_s:g} clips/s each; all {workers} workers feed {result['gpus_fed_by_all_workers']:.2f}")


@click.command("loader")
@click.argument("store", type=str)
@json_option(required=True)
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader worker processes, every row.")
@click.option("--batches", type=int, default=20, show_default=True, help="Timed batches (store and raw rows).")
@click.option("--pyav-batches", type=int, default=None, help="Timed batches for the PyAV row [batches/4].")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Clips per batch, every row.")
@click.option("--videos", "max_videos", type=int, default=64, show_default=True, help="Videos used (spread over the store).")
@click.option("--frames", type=int, default=16, show_default=True, help="Frames per clip.")
@click.option("--stride", type=int, default=4, show_default=True,
              help="Temporal stride between a clip's frames, in source frames.")
@click.option("--crop", type=int, default=112, show_default=True, help="Square crop size in pixels.")
@click.option("--video-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset root of the source videos (default: the root recorded in the store).")
@click.option("--skip-pyav", is_flag=True, help="Leave out the PyAV row (no source videos at hand).")
@click.option("--pyav-single-iframe-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A second PyAV row (pyav_1i) over the same videos encoded with one I-frame, under this root.")
@click.option("--sharing-strategy", type=click.Choice(["file_descriptor", "file_system"]), default=None,
              help="torch.multiprocessing sharing strategy for every row [torch's default: file_descriptor].")
@click.option("--per-item", is_flag=True, help="Also time the store without batched assembly (store_per_item).")
@click.option("--full-sample", is_flag=True, help="Also time the full CSVR sample (future clip, poses, I-frames).")
@click.option("--read-mode", "read_modes", multiple=True, type=click.Choice(["auto", "range", "index", "zarr"]),
              default=("auto",), show_default=True,
              help="Store read strategy (zarr = auto through zarr-python, no direct chunk reads); repeat to "
                   "compare, the first is the headline row.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Rounds over all rows (interleaved); the JSON reports the median and every run.")
@click.option("--threads", type=int, default=None,
              help="Threads of the threaded rows (ThreadedLoader in the main process) [= --workers, at least 1]; "
                   "0 leaves them out.")
@click.option("--thread-reuse/--no-thread-reuse", default=True, show_default=True,
              help="Also time the threaded store/raw rows with reused buffers (safe=False).")
@click.option("--training-path/--no-training-path", default=True, show_default=True,
              help="Also time the training input itself (ResumableBatches as csvr pretrain builds it, full CSVR "
                   "sample) next to a bare memory copy of the same bytes per sample (the limit), the same "
                   "sampling code with zero-cost reads and the input before ThreadedLoader.")
@click.option("--train-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pretraining config of the training-path rows [configs/pretrain/ucf101_r2plus1d_18.yaml]; "
                   "--frames/--stride/--crop/--workers override it.")
@click.option("--gpu-clips-per-s", type=float, default=100.0, show_default=True,
              help="Training speed of one GPU, for the GPUs-fed estimate.")
@click.option("--raw-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the temporary uncompressed copy (default: system temp).")
def bench_loader(store: str, json_out: Path, workers: int, batches: int, pyav_batches: int | None, batch_size: int,
                 max_videos: int, frames: int, stride: int, crop: int, video_root: Path | None, skip_pyav: bool,
                 full_sample: bool, read_modes: tuple[str, ...], repeats: int, gpu_clips_per_s: float,
                 raw_dir: Path | None, pyav_single_iframe_root: Path | None, per_item: bool,
                 sharing_strategy: str | None, threads: int | None, thread_reuse: bool, training_path: bool,
                 train_config: Path | None) -> None:
    """Store loader vs on-the-fly PyAV decoding vs raw memmap reads, same videos and workers."""
    torch.set_num_threads(1)
    if sharing_strategy:
        torch.multiprocessing.set_sharing_strategy(sharing_strategy)
    result = run_bench(store, workers=workers, batches=batches, batch_size=batch_size, max_videos=max_videos,
                       frames=frames, stride=stride, crop=crop, video_root=video_root, skip_pyav=skip_pyav,
                       full_sample=full_sample, read_modes=tuple(read_modes), gpu_clips_per_s=gpu_clips_per_s,
                       raw_dir=raw_dir, pyav_batches=pyav_batches, repeats=repeats, per_item=per_item,
                       pyav_single_iframe_root=pyav_single_iframe_root, threads=threads, thread_reuse=thread_reuse,
                       training_path=training_path, train_config=train_config)
    write_json(json_out, result, indent=2, announce=True)
