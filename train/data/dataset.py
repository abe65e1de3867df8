"""PyTorch datasets over a `csvr-store/1` store: random training clips and deterministic eval clips.

Samples are unaugmented: uint8 frames at the stored size, so workers only read and copy; augmentation
runs batched on the training device (`ClipAugment`). See `sampling.py` for the window conventions and
docs/loader.md for every key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .sampling import (
    ClipSpec,
    clip_window,
    eval_starts,
    frame_positions,
    interpolate_gaps,
    random_start,
    select_iframes,
    stored_stride,
)
from .store import StoreError, StoreReader

log = logging.getLogger(__name__)

SampleKey = int | tuple[int, int]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The per-sample random seed the sampler hands out: a pure function of (seed, epoch, position)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, position]).generate_state(1, np.uint64)[0] >> 1)


_ALIGN = 64  # byte alignment of each array inside a batch buffer


def _alloc_batch(layout: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes/dtypes carved out of ONE buffer (aligned views).

    In a DataLoader worker the buffer is shared memory from the start (one allocation per batch, as
    `default_collate` does per key), so sending the batch to the main process copies nothing.
    """
    offsets, total = {}, 0
    for name, (shape, dtype) in layout.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
        offsets[name] = (total, nbytes)
        total += -(-nbytes // _ALIGN) * _ALIGN
    total = max(total, 1)
    if torch.utils.data.get_worker_info() is not None:
        buf = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(total))
    else:
        buf = torch.empty(total, dtype=torch.uint8)
    return {name: buf[off:off + nb].view(dtype).view(shape)
            for (name, (shape, dtype)), (off, nb) in zip(layout.items(), offsets.values())}


class SampleBatch(Sequence):
    """What `__getitems__` returns: a whole batch already collated in `collated` (one buffer).

    It is also a sequence of per-sample dicts (views into the batch), so PyTorch's `default_collate`
    (or any collate function) still works and yields the same batch; `collate_samples` returns
    `collated` as is, which saves the copy.
    """

    def __init__(self, collated: dict[str, torch.Tensor]) -> None:
        self.collated = collated
        self._n = len(next(iter(collated.values())))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return {k: v[i] for k, v in self.collated.items()}


def collate_samples(batch: Any) -> Any:
    """Collate function for the store datasets: the batch `__getitems__` assembled, else `default_collate`.

    Use as `DataLoader(..., collate_fn=collate_samples)`; any other collate function also works.
    """
    if isinstance(batch, SampleBatch):
        return batch.collated
    return default_collate(batch)


class _VideoCache:
    """Per-process LRU of per-video data (main-actor poses of the whole video), so a worker decodes a
    video's pose chunks once rather than on every sample."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._d: OrderedDict[int, Any] = OrderedDict()

    def get(self, key: int, make: Any) -> Any:
        hit = self._d.get(key)
        if hit is not None:
            self._d.move_to_end(key)
            return hit
        val = make(key)
        self._d[key] = val
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)
        return val


class _StoreClips(Dataset):
    """Shared machinery: a reader, the videos of one split, and reading samples into batch buffers."""

    def __init__(self, store: str | Path | StoreReader, split: str | None, split_index: int, spec: ClipSpec,
                 allow_incomplete: bool, read_mode: str) -> None:
        self.reader = store if isinstance(store, StoreReader) else StoreReader(
            store, allow_incomplete=allow_incomplete, read_mode=read_mode)
        self.spec = spec
        self.split, self.split_index = split, split_index
        self.videos = self.reader.videos.rows_in_split(split, split_index, self.reader.usable_statuses)
        if len(self.videos) == 0:
            raise StoreError(f"store {self.reader.path}: no readable videos in split {split!r} "
                             f"(split_index={split_index})")
        self.stride = stored_stride(spec, self.reader.frame_step)
        self.labels = self.reader.videos["label"][self.videos]
        v = self.reader.videos  # plain-int copies of the table: no numpy scalar work per sample
        self._table = list(zip(v["frame_start"].tolist(), v["num_frames"].tolist(), v["iframe_start"].tolist(),
                               v["num_iframes"].tolist(), v["label"].tolist()))
        self._poses = _VideoCache()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_poses": _VideoCache()}

    def video_shards(self) -> np.ndarray:
        """Per dataset video: the index of the `frames` shard its first frame lies in."""
        return self.reader.videos["frame_start"][self.videos] // self.reader.shard_rows

    # -- batch layout -------------------------------------------------------------------------
    def _layout(self, b: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        spec = self.spec
        t, tf, k = spec.frames, spec.future_frames, spec.max_iframes
        h, w = self.reader.frame_size
        # checked on the first read, not at construction, like the device crop it replaces (so a trainer
        # reports its config errors first; the same message either way comes before any training step)
        if spec.crop is not None and (spec.crop > h or spec.crop > w):
            raise ValueError(f"ClipSpec.crop={spec.crop} is larger than the store's frames {h}x{w}")
        if spec.crop is not None:
            h, w = spec.crop, spec.crop
        pt, ptf = (t, tf) if spec.pixels else (0, 0)
        lay: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            "clip": ((b, pt, h, w, 3), torch.uint8),
            "future_clip": ((b, ptf, h, w, 3), torch.uint8),
            "iframes": ((b, k, h, w, 3), torch.uint8),
            "frame_indices": ((b, t + tf), torch.int64),
        }
        if spec.poses:
            lay.update({"pose": ((b, t, 17, 3), torch.float32), "pose_mask": ((b, t, 17), torch.bool),
                        "future_pose": ((b, tf, 17, 3), torch.float32),
                        "future_pose_mask": ((b, tf, 17), torch.bool)})
        lay.update({"iframe_mask": ((b, k), torch.bool), "iframe_indices": ((b, k), torch.int64),
                    "num_iframes_in_window": ((b,), torch.int64), "iframe_fallback": ((b,), torch.bool),
                    "short_video": ((b,), torch.bool), "label": ((b,), torch.int64),
                    "video_index": ((b,), torch.int64)})
        if spec.crop is not None:
            lay.update({"crop_origin": ((b, 2), torch.int64), "iframe_crop_origin": ((b, k, 2), torch.int64),
                        "frame_size": ((b, 2), torch.int64)})
        return lay

    def _video_pose(self, video: int) -> tuple[np.ndarray, np.ndarray]:
        start, n = self._table[video][:2]
        kp, _ = self.reader.read_main_actor_pose(np.arange(start, start + n, dtype=np.int64))
        return kp, kp[..., 2] > 0

    def _crop_origin(self, rng: np.random.Generator | None) -> tuple[int, int]:
        h, w = self.reader.frame_size
        c = self.spec.crop
        if rng is None:
            return (h - c) // 2, (w - c) // 2
        return int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))

    def _fill(self, out: dict[str, np.ndarray], b: int, video: int, start: int,
              rng: np.random.Generator | None) -> None:
        """Write the sample of video-table row `video` whose clip starts at stored frame `start` into row
        `b` of the batch arrays `out`. `rng` draws the worker crop (None = centre crop)."""
        spec, reader = self.spec, self.reader
        frame_start, n, if_start, n_if, label = self._table[video]
        positions, short = frame_positions(start, n, spec, self.stride)
        rows = (positions + frame_start).tolist()
        t, k = spec.frames, spec.max_iframes
        crop = spec.crop
        win = None
        if crop is not None:
            y0, x0 = self._crop_origin(rng)
            win = (slice(y0, y0 + crop), slice(x0, x0 + crop))
            out["crop_origin"][b] = (y0, x0)
            out["frame_size"][b] = reader.frame_size
        if spec.pixels:
            reader.read_rows_into("frames", rows[:t], out["clip"][b], win)
        if spec.future_frames and spec.pixels:
            reader.read_rows_into("frames", rows[t:], out["future_clip"][b], win)
        out["frame_indices"][b] = positions
        if spec.poses:
            kp_v, obs_v = self._poses.get(video, self._video_pose)
            kp, observed = kp_v[positions], obs_v[positions]
            kp = interpolate_gaps(kp, observed, spec.pose_max_gap)
            out["pose"][b], out["future_pose"][b] = kp[:t], kp[t:]
            out["pose_mask"][b], out["future_pose_mask"][b] = observed[:t], observed[t:]

        count, fallback = 0, False
        im, mask, idx = out["iframes"][b], out["iframe_mask"][b], out["iframe_indices"][b]
        mask[:] = False
        idx[:] = -1
        if k:
            if_index = reader.iframe_frame_index[if_start:if_start + n_if]
            window = clip_window(start, n, spec, self.stride)
            sel, count, fallback = select_iframes(if_index, window, k)
            origins = out["iframe_crop_origin"][b] if crop is not None else None
            if origins is not None:
                origins[:] = -1
            if len(sel):
                for j, q in enumerate(sel.tolist()):
                    iwin = None
                    if crop is not None:
                        iy, ix = self._crop_origin(rng)
                        origins[j] = (iy, ix)
                        iwin = (slice(iy, iy + crop), slice(ix, ix + crop))
                    reader.read_rows_into("iframes/images", [if_start + q], im[j:j + 1], iwin)
                mask[:len(sel)] = True
                idx[:len(sel)] = if_index[sel]
            else:
                # a video without any I-frame record (should not happen: frame 0 is intra): use the clip's
                # middle frame as the I-frame view and flag it, rather than a zero image
                log.warning("video %s has no I-frames; using the clip's middle frame", reader.videos["id"][video])
                mid = t // 2
                im[0] = out["clip"][b][mid]
                mask[0] = True
                idx[0] = positions[mid]
                if origins is not None:
                    origins[0] = out["crop_origin"][b]
                fallback = True
            im[len(sel) if len(sel) else 1:] = 0
        out["num_iframes_in_window"][b] = count
        out["iframe_fallback"][b] = fallback
        out["short_video"][b] = short
        out["label"][b] = label
        out["video_index"][b] = video

    def _assemble(self, items: list[tuple[int, int, np.random.Generator | None]]) -> dict[str, torch.Tensor]:
        """Read samples (video, start, crop rng) into one freshly allocated batch; returns the tensors."""
        batch = _alloc_batch(self._layout(len(items)))
        arrays = {name: t.numpy() for name, t in batch.items()}
        for b, (video, start, rng) in enumerate(items):
            self._fill(arrays, b, video, start, rng)
        return batch

    # -- the batch protocol of `ThreadedLoader` (fill caller-owned, reused buffers) --------------
    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Name -> (shape, dtype) of a batch of `batch_size` samples, as `__getitems__` returns it."""
        return self._layout(batch_size)

    def fill_batch(self, keys: list[SampleKey], out: dict[str, np.ndarray]) -> None:
        """Write the samples of `keys` into rows 0..len(keys)-1 of the caller's arrays `out` (laid out
        as `batch_layout`); the same values as `__getitems__(keys).collated`."""
        raise NotImplementedError

    def load(self, video: int, start: int, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Read the sample of video-table row `video` whose clip starts at stored frame `start`.

        `rng` draws the worker crop when `spec.crop` is set (None = centre crop)."""
        return {k: v[0] for k, v in self._assemble([(video, start, rng)]).items()}


class ClipDataset(_StoreClips):
    """Training samples: one random clip (+ future clip, poses, I-frames) per video of a split.

    Index with an int (randomness from the worker's seed) or with `(i, seed)` as `ShardLocalSampler`
    yields, which makes a sample a pure function of the store, the spec and the seed.
    `split=None` takes every readable video.
    """

    def __init__(self, store: str | Path | StoreReader, split: str | None = "train", split_index: int = 1,
                 spec: ClipSpec | None = None, allow_incomplete: bool = False, read_mode: str = "auto") -> None:
        super().__init__(store, split, split_index, spec or ClipSpec(), allow_incomplete, read_mode)
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def item_shards(self) -> np.ndarray:
        """Per item: the shard it reads from (used by `ShardLocalSampler`)."""
        return self.video_shards()

    def _worker_rng(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng(info.seed if info is not None else torch.initial_seed())
        return self._rng

    def _item(self, key: SampleKey) -> tuple[int, int, np.random.Generator]:
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
            rng = np.random.default_rng(seed)
        else:
            i, rng = int(key), self._worker_rng()
        if not 0 <= i < len(self.videos):
            raise IndexError(f"index {i} out of range for {len(self.videos)} videos")
        video = int(self.videos[i])
        start = random_start(self._table[video][1], self.spec, self.stride, rng)
        return video, start, rng

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        video, start, rng = self._item(key)
        return self.load(video, start, rng)

    def __getitems__(self, keys: list[SampleKey]) -> SampleBatch:
        """A whole batch in one buffer (the DataLoader calls this with the batch's keys): see `SampleBatch`."""
        return SampleBatch(self._assemble([self._item(k) for k in keys]))

    def fill_batch(self, keys: list[SampleKey], out: dict[str, np.ndarray]) -> None:
        for b, key in enumerate(keys):
            video, start, rng = self._item(key)
            self._fill(out, b, video, start, rng)


class EvalClipDataset(_StoreClips):
    """Deterministic evaluation samples: `num_clips` clips per video, starts spread uniformly.

    Item i is clip `i % num_clips` of video `i // num_clips`; the sample adds `clip_index`. Pair with
    `ClipAugment(train=False)` for the centre crop.
    """

    def __init__(self, store: str | Path | StoreReader, split: str | None = "test", split_index: int = 1,
                 spec: ClipSpec | None = None, num_clips: int = 10, allow_incomplete: bool = False,
                 read_mode: str = "auto") -> None:
        super().__init__(store, split, split_index, spec or ClipSpec(), allow_incomplete, read_mode)
        if num_clips < 1:
            raise ValueError("num_clips must be >= 1")
        self.num_clips = num_clips

    def __len__(self) -> int:
        return len(self.videos) * self.num_clips

    def item_shards(self) -> np.ndarray:
        return np.repeat(self.video_shards(), self.num_clips)

    def _item(self, key: SampleKey) -> tuple[int, int, int]:
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        video = int(self.videos[i // self.num_clips])
        clip = i % self.num_clips
        start = int(eval_starts(self._table[video][1], self.spec, self.stride, self.num_clips)[clip])
        return video, start, clip

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        video, start, clip = self._item(key)
        sample = self.load(video, start)
        sample["clip_index"] = torch.tensor(clip, dtype=torch.int64)
        return sample

    def __getitems__(self, keys: list[SampleKey]) -> SampleBatch:
        """A whole batch in one buffer (centre crops when `spec.crop` is set): see `SampleBatch`."""
        items = [self._item(k) for k in keys]
        batch = self._assemble([(v, s, None) for v, s, _ in items])
        batch["clip_index"] = torch.tensor([c for *_, c in items], dtype=torch.int64)
        return SampleBatch(batch)

    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {**self._layout(batch_size), "clip_index": ((batch_size,), torch.int64)}

    def fill_batch(self, keys: list[SampleKey], out: dict[str, np.ndarray]) -> None:
        for b, key in enumerate(keys):
            video, start, clip = self._item(key)
            self._fill(out, b, video, start, None)
            out["clip_index"][b] = clip
