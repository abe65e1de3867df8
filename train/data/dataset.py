"""PyTorch datasets over a `csvr-store/1` store: random training clips and deterministic eval clips.

Samples are unaugmented: uint8 frames at the stored size, so workers only read and copy; augmentation
runs batched on the training device (`ClipAugment`). See `sampling.py` for the window conventions and
docs/loader.md for every key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

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


class _StoreClips(Dataset):
    """Shared machinery: a reader, the videos of one split, and reading one sample at a given start."""

    def __init__(self, store: str | Path | StoreReader, split: str | None, split_index: int, spec: ClipSpec,
                 allow_incomplete: bool, read_mode: str) -> None:
        self.reader = store if isinstance(store, StoreReader) else StoreReader(
            store, allow_incomplete=allow_incomplete, read_mode=read_mode)
        self.spec = spec
        self.split, self.split_index = split, split_index
        self.videos = self.reader.videos.rows_in_split(split, split_index)
        if len(self.videos) == 0:
            raise StoreError(f"store {self.reader.path}: no readable videos in split {split!r} "
                             f"(split_index={split_index})")
        self.stride = stored_stride(spec, self.reader.frame_step)
        self.labels = self.reader.videos["label"][self.videos]

    def video_shards(self) -> np.ndarray:
        """Per dataset video: the index of the `frames` shard its first frame lies in."""
        return self.reader.videos["frame_start"][self.videos] // self.reader.shard_rows

    def load(self, video: int, start: int) -> dict[str, torch.Tensor]:
        """Read the sample of video-table row `video` whose clip starts at stored frame `start`."""
        spec, reader = self.spec, self.reader
        frame_start, n = reader.video_rows(video)
        positions, short = frame_positions(start, n, spec, self.stride)
        rows = frame_start + positions
        frames = reader.read_rows("frames", rows)
        if frames.shape[0] != len(rows):
            raise StoreError(f"store {reader.path}: short read for video {reader.videos['id'][video]}")
        kp, _ = reader.read_main_actor_pose(rows)
        observed = kp[..., 2] > 0
        kp = interpolate_gaps(kp, observed, spec.pose_max_gap)

        if_start, if_index = reader.video_iframes(video)
        window = clip_window(start, n, spec, self.stride)
        sel, count, fallback = select_iframes(if_index, window, spec.max_iframes)
        h, w = reader.frame_size
        k = spec.max_iframes
        iframes = np.zeros((k, h, w, 3), np.uint8)
        iframe_mask = np.zeros(k, bool)
        iframe_idx = np.full(k, -1, np.int64)
        if k and len(sel):
            iframes[:len(sel)] = reader.read_rows("iframes/images", if_start + sel)
            iframe_mask[:len(sel)] = True
            iframe_idx[:len(sel)] = if_index[sel]
        elif k:
            # a video without any I-frame record (should not happen: frame 0 is intra): use the clip's
            # middle frame as the I-frame view and flag it, rather than a zero image
            log.warning("video %s has no I-frames; using the clip's middle frame", reader.videos["id"][video])
            mid = spec.frames // 2
            iframes[0] = frames[mid]
            iframe_mask[0] = True
            iframe_idx[0] = positions[mid]
            fallback = True

        t = spec.frames
        return {
            "clip": torch.from_numpy(np.ascontiguousarray(frames[:t])),
            "future_clip": torch.from_numpy(np.ascontiguousarray(frames[t:])),
            "frame_indices": torch.from_numpy(positions),
            "pose": torch.from_numpy(np.ascontiguousarray(kp[:t])),
            "pose_mask": torch.from_numpy(np.ascontiguousarray(observed[:t])),
            "future_pose": torch.from_numpy(np.ascontiguousarray(kp[t:])),
            "future_pose_mask": torch.from_numpy(np.ascontiguousarray(observed[t:])),
            "iframes": torch.from_numpy(iframes),
            "iframe_mask": torch.from_numpy(iframe_mask),
            "iframe_indices": torch.from_numpy(iframe_idx),
            "num_iframes_in_window": torch.tensor(count, dtype=torch.int64),
            "iframe_fallback": torch.tensor(fallback),
            "short_video": torch.tensor(short),
            "label": torch.tensor(int(reader.videos["label"][video]), dtype=torch.int64),
            "video_index": torch.tensor(int(video), dtype=torch.int64),
        }


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

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
            rng = np.random.default_rng(seed)
        else:
            i, rng = int(key), self._worker_rng()
        if not 0 <= i < len(self.videos):
            raise IndexError(f"index {i} out of range for {len(self.videos)} videos")
        video = int(self.videos[i])
        start = random_start(self.reader.video_rows(video)[1], self.spec, self.stride, rng)
        return self.load(video, start)


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

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        video = int(self.videos[i // self.num_clips])
        clip = i % self.num_clips
        start = int(eval_starts(self.reader.video_rows(video)[1], self.spec, self.stride, self.num_clips)[clip])
        sample = self.load(video, start)
        sample["clip_index"] = torch.tensor(clip, dtype=torch.int64)
        return sample
