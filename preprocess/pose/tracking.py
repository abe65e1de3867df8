"""Main-actor selection: one person's slot per frame, followed across frames.

Detections come sorted by score per frame, so slot order can swap between frames; the pose branch needs
one person's sequence. Detections are linked into tracks by box IoU (or, failing that, centroid
distance relative to the box size), tolerating gaps of a few frames. The main actor is the track with the
largest total prominence (score x sqrt(box area), summed over frames: big, confident, long-lived), extended
by weaker tracks that are never seen elsewhere in the frame at the same time as it (the same person
re-detected after a break, or a duplicate/partial detection of them), for the frames it misses.
"""

from __future__ import annotations

import numpy as np


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


def select_main_actor(keypoints: np.ndarray, boxes: np.ndarray, **link_options) -> np.ndarray:
    """Index into P of the main actor per frame: int8 (T,), -1 where the main actor was not detected.

    `keypoints` (T, P, 17, 3) breaks ties only (more confident joints = more prominent); `boxes` (T, P, 5)
    drives the tracking. See the module docstring for the rule.
    """
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
    ids = link_tracks(boxes, **link_options)
    if (ids < 0).all():
        return out
    area = np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)
    kp_conf = keypoints[..., 2].mean(-1) if keypoints.ndim == 4 else np.zeros((t_len, p), np.float32)
    prominence = boxes[..., 4] * np.sqrt(area) * (1.0 + 0.1 * kp_conf)
    n_tracks = int(ids.max()) + 1
    score = np.zeros(n_tracks)
    frames_of: list[set[int]] = [set() for _ in range(n_tracks)]
    for t, j in zip(*np.nonzero(ids >= 0)):
        score[ids[t, j]] += prominence[t, j]
        frames_of[ids[t, j]].add(int(t))
    for k in np.argsort(-score, kind="stable"):
        slot_k = {t: int(np.nonzero(ids[t] == k)[0][0]) for t in frames_of[k]}
        shared = [t for t in slot_k if out[t] >= 0]
        if any(not _same_place(boxes[t, slot_k[t], :4], boxes[t, out[t], :4]) for t in shared):
            continue  # seen next to the chosen actor at the same time: someone else
        for t, j in slot_k.items():
            if out[t] < 0:
                out[t] = j
    return out
