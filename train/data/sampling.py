"""Where a sample's frames, future frames and I-frames come from inside one video (pure numpy, no I/O).

Conventions (all positions are in the video's stored-frame numbering; stored frame i is source frame
i * frame_step):

- The clip is T frames at `stride` from `start`; the future clip is the next T' frames at the same
  stride, i.e. positions start + k * stride for k = 0 .. T+T'-1. The whole sample spans
  (T+T'-1) * stride + 1 stored frames.
- The clip's *window* is the T * stride stored frames it stands for: [start, start + T * stride). The
  I-frames whose `frame_index` falls inside it are the clip's positives.
- Short videos (fewer stored frames than the span): policy "loop" (default) wraps positions modulo the
  video length, like mmaction2's looping; "pad" repeats the last frame. The sample's `short_video` flag
  says that either happened; nothing is ever filled with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


SHORT_VIDEO_POLICIES = ("loop", "pad")


@dataclass(frozen=True)
class ClipSpec:
    """The sample recipe. `stride` is in source frames (converted to stored frames via frame_step).

    frames / future_frames: T and T' (T' may be 0 when no future clip is wanted).
    max_iframes: K, the fixed number of I-frame slots (extra I-frames are subsampled evenly; 0 = none).
    short_video: "loop" or "pad" (see module docstring).
    pose_max_gap: longest run of missing samples of a joint that is filled by linear interpolation.
    crop: None (default) = samples at the stored frame size, augmentation crops on the device; an int c =
        crop c x c in the worker (random for `ClipDataset`, centre for `EvalClipDataset`; each I-frame
        its own), ~1.7x less data to ship. Samples then carry `crop_origin`, `iframe_crop_origin` and
        `frame_size`, and `ClipAugment` uses them so poses still follow the crop.
    poses: False leaves out the pose keys (recipes that do not use them read less).
    pixels: False reads no frames: `clip`, `future_clip` and `iframes` come with 0 frames (pose-only
        recipes such as the pose pretraining stage); needs max_iframes=0.
    """

    frames: int = 16
    stride: int = 4
    future_frames: int = 16
    max_iframes: int = 8
    short_video: str = "loop"
    pose_max_gap: int = 2
    crop: int | None = None
    poses: bool = True
    pixels: bool = True

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"ClipSpec.crop must be None or >= 1, got {self.crop}")
        if self.frames < 1 or self.stride < 1 or self.future_frames < 0 or self.max_iframes < 0:
            raise ValueError(f"invalid ClipSpec {self}: frames>=1, stride>=1, future_frames>=0, max_iframes>=0")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {self.short_video!r}")
        if self.pose_max_gap < 0:
            raise ValueError("pose_max_gap must be >= 0")
        if not self.pixels and self.max_iframes:
            raise ValueError(f"ClipSpec(pixels=False) reads no I-frames: set max_iframes=0, not {self.max_iframes}")

    @property
    def total_frames(self) -> int:
        return self.frames + self.future_frames


def stored_stride(spec: ClipSpec, frame_step: int) -> int:
    """The stride in stored frames for a store that kept every `frame_step`-th source frame: exactly
    `spec.stride / frame_step`; a recipe stride the store cannot serve exactly is refused (ValueError)."""
    if frame_step <= 1:
        return spec.stride
    if spec.stride % frame_step:
        raise ValueError(
            f"clip stride {spec.stride} (source frames) cannot be served exactly by a store that kept every "
            f"{frame_step}-th source frame (--frame-step {frame_step}): use a stride that is a multiple of "
            f"{frame_step}, or preprocess with a --frame-step that divides {spec.stride}")
    return spec.stride // frame_step


def span(spec: ClipSpec, stride: int) -> int:
    """Stored frames covered from the first clip frame to the last future frame, inclusive."""
    return (spec.total_frames - 1) * stride + 1


def random_start(num_frames: int, spec: ClipSpec, stride: int, rng: np.random.Generator) -> int:
    """A uniformly random valid start; for short videos any frame (loop) or 0 (pad)."""
    max_start = num_frames - span(spec, stride)
    if max_start >= 0:
        return int(rng.integers(0, max_start + 1))
    return int(rng.integers(0, num_frames)) if spec.short_video == "loop" else 0


def eval_starts(num_frames: int, spec: ClipSpec, stride: int, num_clips: int) -> np.ndarray:
    """`num_clips` deterministic starts spread uniformly from the first to the last valid start."""
    if num_clips < 1:
        raise ValueError("num_clips must be >= 1")
    max_start = num_frames - span(spec, stride)
    if max_start >= 0:
        return np.round(np.linspace(0, max_start, num_clips)).astype(np.int64)
    if spec.short_video == "loop":
        return np.floor(np.linspace(0, num_frames, num_clips, endpoint=False)).astype(np.int64)
    return np.zeros(num_clips, np.int64)


def frame_positions(start: int, num_frames: int, spec: ClipSpec, stride: int) -> tuple[np.ndarray, bool]:
    """Positions (T+T',) of the clip then the future clip, and whether the short-video policy applied."""
    if num_frames < 1:
        raise ValueError("video has no frames")
    raw = start + np.arange(spec.total_frames, dtype=np.int64) * stride
    if raw[-1] < num_frames:
        return raw, False
    if spec.short_video == "loop":
        return raw % num_frames, True
    return np.minimum(raw, num_frames - 1), True


def clip_window(start: int, num_frames: int, spec: ClipSpec, stride: int) -> np.ndarray:
    """The stored frames the clip stands for: [start, start + T*stride), wrapped or cut like its positions."""
    raw = start + np.arange(spec.frames * stride, dtype=np.int64)
    if spec.short_video == "loop":
        return np.unique(raw % num_frames)
    return raw[raw < num_frames]


def select_iframes(iframe_index: np.ndarray, window: np.ndarray, max_iframes: int) -> tuple[np.ndarray, int, bool]:
    """Which of a video's I-frames (positions into `iframe_index`) to use for a clip.

    Returns (selected positions, number of I-frames inside the window, fallback used). All I-frames in
    the window are positives; more than `max_iframes` are subsampled evenly (deterministic). When the
    window holds none, the fallback is the I-frame nearest to the window's centre (ties: the earlier).
    """
    inside = np.flatnonzero(np.isin(iframe_index, window))
    count = len(inside)
    fallback = False
    if count == 0 and len(iframe_index):
        centre = float(window[0] + window[-1]) / 2.0 if len(window) else 0.0
        inside = np.array([int(np.argmin(np.abs(iframe_index - centre)))])
        fallback = True
    if len(inside) > max_iframes:
        keep = np.round(np.linspace(0, len(inside) - 1, max_iframes)).astype(np.int64) if max_iframes else []
        inside = inside[keep]
    return inside.astype(np.int64), count, fallback


def interpolate_gaps(keypoints: np.ndarray, observed: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill x, y of runs of at most `max_gap` unobserved samples between two observed samples, linearly.

    keypoints (n, 17, 3), observed (n, 17) bool. Confidence of filled samples stays 0 and the caller's mask
    keeps saying they were not observed; gaps at either end or longer than `max_gap` stay 0.
    """
    out = keypoints.copy()
    if max_gap == 0:
        return out
    n = len(keypoints)
    t = np.arange(n)
    for j in range(keypoints.shape[1]):
        obs = np.flatnonzero(observed[:, j])
        if len(obs) < 2 or len(obs) == n:
            continue
        gaps = np.diff(obs)
        for a, b in zip(obs[:-1][(gaps > 1) & (gaps <= max_gap + 1)], obs[1:][(gaps > 1) & (gaps <= max_gap + 1)]):
            w = (t[a + 1:b] - a) / float(b - a)
            out[a + 1:b, j, :2] = (1 - w)[:, None] * keypoints[a, j, :2] + w[:, None] * keypoints[b, j, :2]
    return out
