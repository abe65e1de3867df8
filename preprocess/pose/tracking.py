"""Main-actor selection: one person's slot per frame, followed across frames.

Detections come sorted by score per frame, so slot order can swap between frames; the pose branch needs
one person's sequence. Detections are linked into tracks by box IoU (or, failing that, centroid
distance relative to the box size), tolerating gaps of a few frames. The main actor is the track with the
largest total prominence (score x sqrt(box area), summed over frames: big, confident, long-lived), extended
by weaker tracks that are (almost) never seen elsewhere in the frame at the same time as it (the same person
re-detected after a break, or a duplicate/partial detection of them), for the frames it misses.

A track needs temporal support to be used at all (`TrackerOptions`): the main actor's track must be seen in
at least `min_frames` frames (half the frames of a video shorter than 2 x `min_frames`) and `min_fraction`
of the video, with a mean detection score of at least `min_score`; a chained fragment needs `fragment_min_frames` frames and the same
mean score. A lone low-score detection (a false positive on the background) therefore never becomes the
actor: the frames stay -1 instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

TRACK_PREFIX = "track_"  # pose_options keys `track_<field>` set TrackerOptions fields (build_estimator)


@dataclass(frozen=True)
class TrackerOptions:
    """Main-actor tracking settings (docs/pose.md, "Main-actor tracking").

    Support: a track becomes the main actor only if seen in >= min(`min_frames`, ceil(T / 2)) frames and
    >= `min_fraction` x T frames of the T-frame video, with a mean box score >= `min_score`; a weaker track
    fills the actor's missing frames only if seen in >= `fragment_min_frames` frames with a mean score
    >= `min_score`, and unless it is seen elsewhere in the frame than the already chosen actor in more than
    `max_elsewhere` of the frames it shares with them (0: in any; then it is someone else).
    Linking: `min_iou`, `max_gap`, `max_centroid_shift`, `recency` (see `link_tracks`).
    `TrackerOptions(min_frames=1, min_score=0, max_elsewhere=0)` is the tracker before issue 12 item 6
    (no support needed, any frame elsewhere makes a track someone else). Defaults chosen by measurement
    (docs/pose.md, "Settings").
    """

    min_frames: int = 8
    min_fraction: float = 0.0
    min_score: float = 0.3
    fragment_min_frames: int = 1
    max_elsewhere: float = 0.25
    min_iou: float = 0.1
    max_gap: int = 10
    max_centroid_shift: float = 0.5
    recency: float = 0.9

    def __post_init__(self) -> None:
        if self.min_frames < 1 or self.fragment_min_frames < 1:
            raise ValueError(f"min_frames and fragment_min_frames must be >= 1, got {self.min_frames}, {self.fragment_min_frames}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if not 0.0 <= self.max_elsewhere < 1.0:
            raise ValueError(f"max_elsewhere must be in [0, 1), got {self.max_elsewhere}")
        if self.max_gap < 0 or not 0.0 < self.recency <= 1.0 or self.max_centroid_shift < 0:
            raise ValueError("max_gap must be >= 0, recency in (0, 1], max_centroid_shift >= 0")

    def support_frames(self, t_len: int) -> int:
        """Frames a T-frame video's main-actor track must be seen in: `min_frames` (half the video if it is
        shorter than 2 x `min_frames`), and `min_fraction` x T."""
        return max(min(self.min_frames, math.ceil(t_len / 2)), math.ceil(self.min_fraction * t_len - 1e-9), 1)

    def link_options(self) -> dict[str, Any]:
        return {"min_iou": self.min_iou, "max_gap": self.max_gap, "max_centroid_shift": self.max_centroid_shift,
                "recency": self.recency}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "TrackerOptions":
        return TrackerOptions(**{**asdict(self), **changes})

    @classmethod
    def parse(cls, text: str) -> "TrackerOptions":
        """`"min_frames=8,min_score=0.4"` (fields of the defaults changed; "" = defaults)."""
        changes: dict[str, Any] = {}
        for item in filter(None, (x.strip() for x in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"tracker setting {item!r} is not KEY=VALUE")
            changes[key.strip()] = value.strip()
        return cls.from_dict(changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrackerOptions":
        """Defaults with `values` ({field: value}, values may be strings) applied; unknown keys refused."""
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(f"unknown tracker setting(s) {unknown}; known: {sorted(types)}")
        conv = {k: (int(float(v)) if types[k] == "int" else float(v)) for k, v in values.items()}
        return cls(**conv)


def split_tracker_options(options: dict[str, Any]) -> tuple[dict[str, Any], "TrackerOptions"]:
    """Split pose_options into the backend's own options and `TrackerOptions` (keys `track_<field>`)."""
    backend = {k: v for k, v in options.items() if not k.startswith(TRACK_PREFIX)}
    tracker = {k[len(TRACK_PREFIX):]: v for k, v in options.items() if k.startswith(TRACK_PREFIX)}
    try:
        return backend, TrackerOptions.from_dict(tracker)
    except ValueError as e:
        raise ValueError(f"pose option: {e} (pass them as {TRACK_PREFIX}<name>)") from e


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _affinity(a: np.ndarray, b: np.ndarray, min_iou: float, max_centroid_shift: float) -> float:
    """Matching strength of boxes a and b (0 = not the same person): IoU, else a small centroid-shift score."""
    iou = _iou(a, b)
    if iou >= min_iou:
        return iou
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1e-6)
    shift = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / size
    return 1e-3 * (1.0 - shift / max_centroid_shift) if shift < max_centroid_shift else 0.0


def link_tracks(
    boxes: np.ndarray, *, min_iou: float = 0.1, max_gap: int = 10, max_centroid_shift: float = 0.5,
    recency: float = 0.9,
) -> np.ndarray:
    """Track id per detection: (T, P) int32, -1 for empty slots.

    Frame by frame, each detection joins the live track (seen within `max_gap` frames) whose last box it
    overlaps most (IoU >= `min_iou`, or a centroid shift below `max_centroid_shift` box sizes); pairs are
    matched greedily by affinity, discounted by `recency` per frame since the track was last seen.
    Unmatched detections start new tracks.
    """
    boxes = np.asarray(boxes, np.float32)
    t_len, p = boxes.shape[:2]
    ids = np.full((t_len, p), -1, np.int32)
    last_box: list[np.ndarray] = []
    last_t: list[int] = []
    for t in range(t_len):
        dets = [j for j in range(p) if boxes[t, j, 4] > 0]
        live = [k for k in range(len(last_box)) if t - last_t[k] <= max_gap + 1]
        pairs = []
        for j in dets:
            for k in live:
                a = _affinity(boxes[t, j, :4], last_box[k], min_iou, max_centroid_shift)
                if a > 0:  # prefer the most recently seen track among similar ones
                    pairs.append((a * recency ** (t - last_t[k] - 1), j, k))
        pairs.sort(key=lambda x: -x[0])
        used_j: set[int] = set()
        used_k: set[int] = set()
        for _, j, k in pairs:
            if j in used_j or k in used_k:
                continue
            used_j.add(j)
            used_k.add(k)
            ids[t, j] = k
        for j in dets:
            if j not in used_j:
                ids[t, j] = len(last_box)
                last_box.append(boxes[t, j, :4].copy())
                last_t.append(t)
        for j in dets:
            k = ids[t, j]
            last_box[k] = boxes[t, j, :4].copy()
            last_t[k] = t
    return ids


def _same_place(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes of one frame cover the same person: IoU or intersection-over-smaller-box >= 0.5."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return _iou(a, b) >= 0.5 or (smaller > 0 and inter / smaller >= 0.5)


def select_main_actor(
    keypoints: np.ndarray, boxes: np.ndarray, options: TrackerOptions | None = None, **link_options
) -> np.ndarray:
    """Index into P of the main actor per frame: int8 (T,), -1 where the main actor was not detected.

    `keypoints` (T, P, 17, 3) breaks ties only (more confident joints = more prominent); `boxes` (T, P, 5)
    drives the tracking. `options` (default `TrackerOptions()`) sets the support rule and the linking;
    `link_options` (min_iou, max_gap, ...) override its linking fields. See the module docstring.
    """
    opts = options if options is not None else TrackerOptions()
    if link_options:
        opts = opts.replace(**link_options)
    boxes = np.asarray(boxes, np.float32)
    keypoints = np.asarray(keypoints, np.float32)
    if boxes.ndim != 3 or boxes.shape[2] != 5:
        raise ValueError(f"boxes must be (T, P, 5), got {boxes.shape}")
    if keypoints.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"keypoints {keypoints.shape} and boxes {boxes.shape} disagree on (T, P)")
    t_len, p = boxes.shape[:2]
    if p > 127:
        raise ValueError(f"at most 127 people per frame fit an int8 index, got {p}")
    out = np.full(t_len, -1, np.int8)
    if t_len == 0:
        return out
    ids = link_tracks(boxes, **opts.link_options())
    if (ids < 0).all():
        return out
    area = np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)
    kp_conf = keypoints[..., 2].mean(-1) if keypoints.ndim == 4 else np.zeros((t_len, p), np.float32)
    prominence = boxes[..., 4] * np.sqrt(area) * (1.0 + 0.1 * kp_conf)
    n_tracks = int(ids.max()) + 1
    score = np.zeros(n_tracks)
    det_score = np.zeros(n_tracks)
    frames_of: list[set[int]] = [set() for _ in range(n_tracks)]
    for t, j in zip(*np.nonzero(ids >= 0)):
        score[ids[t, j]] += prominence[t, j]
        det_score[ids[t, j]] += boxes[t, j, 4]
        frames_of[ids[t, j]].add(int(t))
    n_frames = np.array([len(f) for f in frames_of])
    confident = det_score / np.maximum(n_frames, 1) >= opts.min_score - 1e-6  # not a lone background blip
    order = np.argsort(-score, kind="stable")
    seeds = [k for k in order if confident[k] and n_frames[k] >= opts.support_frames(t_len)]
    if not seeds:
        return out  # nobody seen long and confidently enough to be the main actor
    for k in [seeds[0]] + [k for k in order if k != seeds[0]]:
        if k != seeds[0] and not (confident[k] and n_frames[k] >= opts.fragment_min_frames):
            continue
        slot_k = {t: int(np.nonzero(ids[t] == k)[0][0]) for t in frames_of[k]}
        shared = [t for t in slot_k if out[t] >= 0]
        elsewhere = sum(not _same_place(boxes[t, slot_k[t], :4], boxes[t, out[t], :4]) for t in shared)
        if elsewhere and elsewhere > opts.max_elsewhere * len(shared):
            continue  # seen next to the chosen actor at the same time: someone else
        for t, j in slot_k.items():
            if out[t] < 0:
                out[t] = j
    return out
