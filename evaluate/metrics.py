"""Pure evaluation metrics on arrays: recognition, retrieval, pretext tasks, generation quality.

Every function takes NumPy arrays or torch tensors (converted with `as_numpy`) and returns plain
Python numbers or NumPy arrays. Nothing here loads a model, reads a file or logs a side effect, so
each metric is checked against hand-computed answers in `tests/test_eval_metrics.py`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RETRIEVAL_KS: tuple[int, ...] = (1, 5, 10, 20)


def as_numpy(x: Any) -> np.ndarray:
    """Return `x` as a NumPy array (torch tensors are detached and moved to CPU first)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _labels(y: Any, name: str) -> np.ndarray:
    arr = as_numpy(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _scores(s: Any, name: str) -> np.ndarray:
    arr = as_numpy(s).astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {arr.shape}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"length mismatch: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"empty input: {sorted(lengths)}")
    return n


# --------------------------------------------------------------------------------------------------
# Action recognition
# --------------------------------------------------------------------------------------------------


def top1_accuracy(scores: Any, labels: Any) -> float:
    """Fraction of rows whose arg-max score equals the label (clip-level top-1 when rows are clips)."""
    s, y = _scores(scores, "scores"), _labels(labels, "labels")
    _same_length(scores=s, labels=y)
    return float(np.mean(s.argmax(axis=1) == y))


def group_mean(values: Any, group_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Average rows of `values` (N, ...) that share a group id (e.g. clips of one video).

    Returns (unique ids in first-appearance order, means (G, ...)). Used for video-level
    predictions (averaged clip scores) and video features (averaged clip features).
    """
    v = as_numpy(values).astype(np.float64, copy=False)
    g = as_numpy(group_ids)
    if g.ndim != 1:
        raise ValueError(f"group ids must be 1-D, got shape {g.shape}")
    _same_length(values=v, group_ids=g)
    uniq, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first-appearance order
    sums = np.zeros((len(uniq),) + v.shape[1:], dtype=np.float64)
    np.add.at(sums, inverse, v)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    means = sums / counts.reshape((-1,) + (1,) * (v.ndim - 1))
    return uniq[order], means[order]


class VideoAccumulator:
    """Per-video running sums of clip rows (scores or features) for streaming evaluation.

    `add` takes one batch of rows with their video ids (and optionally labels); memory is
    O(videos x D), never O(clips). `means()` equals `group_mean` over all rows added: the same float64
    sums, added in the same order, so the numbers are bit-identical. Videos come out in
    first-appearance order. Clips of one video with different labels raise a ValueError.
    """

    def __init__(self) -> None:
        self._slot: dict[Any, int] = {}
        self._ids: list[Any] = []
        self._labels: list[int] = []
        self._sums: np.ndarray | None = None  # (capacity, ...) float64
        self._counts = np.zeros(0, dtype=np.int64)
        self.num_rows = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, values: Any, video_ids: Any, labels: Any | None = None) -> None:
        v = as_numpy(values).astype(np.float64, copy=False)
        g = as_numpy(video_ids)
        if g.ndim != 1:
            raise ValueError(f"group ids must be 1-D, got shape {g.shape}")
        y = None if labels is None else _labels(labels, "labels")
        _same_length(values=v, group_ids=g, **({"labels": y} if y is not None else {}))
        slots = np.empty(len(g), dtype=np.int64)
        bad = []
        for i, key in enumerate(g.tolist()):
            s = self._slot.get(key)
            if s is None:
                s = self._slot[key] = len(self._ids)
                self._ids.append(key)
                self._labels.append(int(y[i]) if y is not None else 0)
            elif y is not None and self._labels[s] != int(y[i]):
                bad.append(key)
            slots[i] = s
        if bad:
            raise ValueError(f"clips of video(s) {sorted(set(bad))[:5]} carry different labels")
        n = len(self._ids)
        if self._sums is None:
            self._sums = np.zeros((max(16, n),) + v.shape[1:], dtype=np.float64)
        elif self._sums.shape[1:] != v.shape[1:]:
            raise ValueError(f"rows of shape {v.shape[1:]} after rows of shape {self._sums.shape[1:]}")
        if n > len(self._sums):  # grow by doubling: amortised O(videos) copies
            grown = np.zeros((max(n, 2 * len(self._sums)),) + self._sums.shape[1:], dtype=np.float64)
            grown[: len(self._sums)] = self._sums
            self._sums = grown
        np.add.at(self._sums, slots, v)  # row by row, in order: the same sums as group_mean
        self._counts = np.concatenate([self._counts, np.zeros(n - len(self._counts), dtype=np.int64)])
        np.add.at(self._counts, slots, 1)
        self.num_rows += len(g)

    def ids(self) -> np.ndarray:
        return np.asarray(self._ids)

    def counts(self) -> np.ndarray:
        """(V,) clips per video."""
        return self._counts.copy()

    def labels(self) -> np.ndarray:
        """(V,) the label of each video (meaningful when labels were given to `add`)."""
        return np.asarray(self._labels, dtype=np.int64)

    def means(self) -> np.ndarray:
        """(V, ...) float64 mean row per video."""
        if self._sums is None:
            raise ValueError("empty input: no rows were added")
        n = len(self._ids)
        c = self._counts.astype(np.float64)
        return self._sums[:n] / c.reshape((-1,) + (1,) * (self._sums.ndim - 1))


class RecognitionAccumulator:
    """Streaming clip- and video-level recognition: per batch, the clip hits and per-video score sums.

    The numbers equal those of `top1_accuracy` (clips) and `video_level_scores` (videos) on the
    concatenated clip scores, without keeping the clip scores.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.videos = VideoAccumulator()
        self.hits = 0

    @property
    def num_clips(self) -> int:
        return self.videos.num_rows

    def add(self, clip_scores: Any, clip_labels: Any, video_index: Any) -> None:
        s, y = _scores(clip_scores, "clip_scores"), _labels(clip_labels, "clip_labels")
        if s.shape[1] != self.num_classes:
            raise ValueError(f"classifier outputs {s.shape[1]} classes, dataset has {self.num_classes}")
        _same_length(clip_scores=s, clip_labels=y)
        self.videos.add(s, video_index, y)
        self.hits += int(np.sum(s.argmax(axis=1) == y))

    def clip_top1(self) -> float:
        if not self.num_clips:
            raise ValueError("empty input: no clips were added")
        return self.hits / self.num_clips

    def video_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video ids, mean scores (V, C), labels (V,)) as `video_level_scores` returns them."""
        return self.videos.ids(), self.videos.means(), self.videos.labels()


def video_level_scores(
    clip_scores: Any, clip_labels: Any, video_ids: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average clip scores per video: returns (video ids, scores (V, C), labels (V,)).

    Raises if the clips of one video carry different labels (a sign of a mis-grouped loader).
    Averaging raw logits or softmax probabilities are both common; pass whichever you want averaged.
    """
    s, y = _scores(clip_scores, "clip_scores"), _labels(clip_labels, "clip_labels")
    ids = as_numpy(video_ids)
    _same_length(clip_scores=s, clip_labels=y, video_ids=ids)
    vids, mean_scores = group_mean(s, ids)
    _, lab_mean = group_mean(y.astype(np.float64), ids)
    _, lab_sq = group_mean(y.astype(np.float64) ** 2, ids)
    inconsistent = np.nonzero(lab_sq - lab_mean**2 > 1e-9)[0]
    if inconsistent.size:
        raise ValueError(f"clips of video(s) {vids[inconsistent][:5].tolist()} carry different labels")
    return vids, mean_scores, np.rint(lab_mean).astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y_true=t, y_pred=p)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"{name} holds a class index outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_accuracy(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(C,) accuracy per true class (recall); NaN for classes absent from `y_true`."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return acc.astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------


def l2_normalise(x: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm; an all-zero row stays zero (cosine 0 to everything) with a warning."""
    a = as_numpy(x).astype(np.float64, copy=False)
    if a.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("features contain NaN or Inf")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    zero = int(np.sum(norms[:, 0] < eps))
    if zero:
        log.warning("%d of %d feature rows are all zero; their cosine similarity is 0", zero, len(a))
    return a / np.maximum(norms, eps)


def cosine_similarity(a: Any, b: Any) -> np.ndarray:
    """(Na, Nb) cosine similarities between the rows of `a` and `b`."""
    an, bn = l2_normalise(a), l2_normalise(b)
    if an.shape[1] != bn.shape[1]:
        raise ValueError(f"feature sizes differ: {an.shape[1]} vs {bn.shape[1]}")
    return an @ bn.T


def nearest_neighbours(query: Any, gallery: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Nq, k) and cosine similarities (Nq, k) of each query's k most similar gallery rows.

    Ties are broken by gallery order (stable sort), so results are deterministic.
    """
    sim = cosine_similarity(query, gallery)
    if not 1 <= k <= sim.shape[1]:
        raise ValueError(f"k={k} outside [1, gallery size={sim.shape[1]}]")
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sim, idx, axis=1)


def retrieval_recall_at_k(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    ks: Sequence[int] = RETRIEVAL_KS,
) -> dict[int, float]:
    """R@k of nearest-neighbour video retrieval, the protocol of VCOP / CoCLR / the paper (IV-B).

    Each query (a test video's feature) retrieves its k nearest gallery rows (the training videos)
    by cosine similarity; the query counts as a hit at k when ANY of them has the query's label.
    A k larger than the gallery is clipped to the gallery size (logged), as the full gallery is
    then retrieved.
    """
    ql, gl = _labels(query_labels, "query_labels"), _labels(gallery_labels, "gallery_labels")
    qf, gf = as_numpy(query_features), as_numpy(gallery_features)
    _same_length(query_features=qf, query_labels=ql)
    _same_length(gallery_features=gf, gallery_labels=gl)
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    kmax = min(max(ks), len(gl))
    if max(ks) > len(gl):
        log.warning("R@%d requested with only %d gallery videos: k clipped", max(ks), len(gl))
    idx, _ = nearest_neighbours(qf, gf, kmax)
    hits = gl[idx] == ql[:, None]  # (Nq, kmax)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    return {int(k): float(np.mean(first_hit < min(int(k), kmax))) for k in ks}


# --------------------------------------------------------------------------------------------------
# Pretext tasks (Table II)
# --------------------------------------------------------------------------------------------------


def context_matching_top1(
    video_embeddings: Any, iframe_embeddings: Any, iframe_owner: Any | None = None, clip_video: Any | None = None
) -> float:
    """Top-1 of matching each clip's video embedding to an I-frame of its own video within a batch.

    `video_embeddings` (B, C): g^V outputs; `iframe_embeddings` (M, C): g^I outputs of every valid
    I-frame in the batch; `iframe_owner` (M,): which clip (0..B-1) each I-frame belongs to (defaults
    to `arange(B)`, one I-frame per clip). A clip is correct when its most similar I-frame (cosine)
    belongs to it; with several I-frames per clip any of them counts (they are all positives of
    MI-InfoNCE). `clip_video` (B,) optionally names each clip's video: when several clips of one
    video share a batch (evaluation loaders put a video's clips together), an I-frame of the same
    video counts as a match even if it came with another clip.
    """
    v, f = as_numpy(video_embeddings), as_numpy(iframe_embeddings)
    owner = np.arange(len(f)) if iframe_owner is None else _labels(iframe_owner, "iframe_owner")
    _same_length(iframe_embeddings=f, iframe_owner=owner)
    if owner.min() < 0 or owner.max() >= len(v):
        raise ValueError(f"iframe_owner holds an index outside [0, {len(v)})")
    sim = cosine_similarity(v, f)
    matched = owner[sim.argmax(axis=1)]
    if clip_video is None:
        return float(np.mean(matched == np.arange(len(v))))
    cv = as_numpy(clip_video)
    if cv.shape != (len(v),):
        raise ValueError(f"clip_video shape {cv.shape} must be ({len(v)},)")
    return float(np.mean(cv[matched] == cv))


def pose_mse_x100(predicted: Any, target: Any, mask: Any | None = None) -> float:
    """Pose-prediction MSE x 100 as in Table II.

    `predicted`/`target` (..., 17, 2) hold normalised joint coordinates (x/W, y/H in [0, 1]); `mask`
    (..., 17) bool marks observed target joints (unobserved ones are excluded, never scored against
    zeros). The result is 100 x the mean squared error per coordinate over observed joints.
    """
    p, t = as_numpy(predicted).astype(np.float64), as_numpy(target).astype(np.float64)
    if p.shape != t.shape or p.shape[-1] != 2:
        raise ValueError(f"predicted {p.shape} and target {t.shape} must match and end in 2 (x, y)")
    m = np.ones(p.shape[:-1], dtype=bool) if mask is None else as_numpy(mask).astype(bool)
    if m.shape != p.shape[:-1]:
        raise ValueError(f"mask shape {m.shape} must be {p.shape[:-1]}")
    if not m.any():
        raise ValueError("mask selects no observed joint: pose MSE is undefined")
    sq = ((p - t) ** 2)[m]  # (n_observed, 2)
    return float(100.0 * sq.mean())


# --------------------------------------------------------------------------------------------------
# Video generation quality
# --------------------------------------------------------------------------------------------------


def inception_score(probabilities: Any, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) from class probabilities (N, C) of a classifier.

    The paper's Table II reports IS of generated videos. The TGAN line of work computes it with a
    C3D trained on UCF101; offline we use our own classifier (the fine-tuned action recogniser) on
    the generated clips -- see docs/evaluation.md. Returns (mean, std) over `splits` equal parts.
    Ranges from 1 (all samples alike or uncertain) to C (confident and evenly spread over classes).
    """
    p = _scores(probabilities, "probabilities")
    if np.any(p < -1e-6) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities must be non-negative rows summing to 1 (apply softmax first)")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits={splits} outside [1, N={len(p)}]")
    scores = []
    for part in np.array_split(np.clip(p, eps, 1.0), splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part) - np.log(marginal)), axis=1)
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _video_pair(generated: Any, real: Any) -> tuple[np.ndarray, np.ndarray]:
    g, r = as_numpy(generated).astype(np.float64), as_numpy(real).astype(np.float64)
    if g.shape != r.shape:
        raise ValueError(f"generated {g.shape} and real {r.shape} shapes differ")
    if g.ndim < 3:
        raise ValueError(f"expected (..., H, W, 3) frames, got shape {g.shape}")
    return g, r


def psnr(generated: Any, real: Any, data_range: float = 1.0) -> float:
    """Mean PSNR in dB over frames (..., H, W, 3); frames with zero error are capped at 100 dB."""
    return float(psnr_frames(generated, real, data_range).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size) - (size - 1) / 2
    w = np.exp(-(ax**2) / (2 * sigma**2))
    return w / w.sum()


def _filter2d(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering over the two axes -3, -2 of (..., H, W, C)."""
    k = len(w)
    h, wd = img.shape[-3], img.shape[-2]
    out = sum(w[i] * img[..., i : h - k + 1 + i, :, :] for i in range(k))
    return sum(w[j] * out[..., :, j : wd - k + 1 + j, :] for j in range(k))


def ssim(generated: Any, real: Any, data_range: float = 1.0, window: int = 11) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5, per channel) over frames (..., H, W, 3)."""
    return float(ssim_frames(generated, real, data_range, window).mean())


def psnr_frames(generated: Any, real: Any, data_range: float = 1.0) -> np.ndarray:
    """(F,) PSNR in dB of each frame (..., H, W, 3), capped at 100 dB (`psnr` is their mean)."""
    g, r = _video_pair(generated, real)
    mse = ((g - r) ** 2).reshape(-1, int(np.prod(g.shape[-3:]))).mean(axis=1)
    vals = np.where(mse > 0, 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-30)), 100.0)
    return np.minimum(vals, 100.0)


def ssim_frames(generated: Any, real: Any, data_range: float = 1.0, window: int = 11) -> np.ndarray:
    """(F,) mean SSIM of each frame (..., H, W, 3) (`ssim` is their mean: equal-size frames)."""
    g, r = _video_pair(generated, real)
    if min(g.shape[-3], g.shape[-2]) < window:
        raise ValueError(f"frames {g.shape[-3:-1]} smaller than the SSIM window {window}")
    g = g.reshape((-1,) + g.shape[-3:])
    r = r.reshape((-1,) + r.shape[-3:])
    w = _gaussian_window(window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_g, mu_r = _filter2d(g, w), _filter2d(r, w)
    var_g = _filter2d(g * g, w) - mu_g**2
    var_r = _filter2d(r * r, w) - mu_r**2
    cov = _filter2d(g * r, w) - mu_g * mu_r
    ssim_map = ((2 * mu_g * mu_r + c1) * (2 * cov + c2)) / ((mu_g**2 + mu_r**2 + c1) * (var_g + var_r + c2))
    return ssim_map.reshape(len(g), -1).mean(axis=1)


class FrameQualityAccumulator:
    """Streaming PSNR / SSIM: per batch of (generated, real) frames (..., H, W, 3), the float64 sums of
    the per-frame PSNR and SSIM. `psnr()` / `ssim()` equal `psnr` / `ssim` on the concatenated frames
    (up to float summation order, ~1e-12), without keeping any frame."""

    def __init__(self, data_range: float = 1.0, window: int = 11) -> None:
        self.data_range = float(data_range)
        self.window = int(window)
        self.psnr_sum = 0.0
        self.ssim_sum = 0.0
        self.num_frames = 0
        self._shape: tuple[int, ...] | None = None

    def add(self, generated: Any, real: Any) -> None:
        g, r = _video_pair(generated, real)
        if self._shape is None:
            self._shape = tuple(g.shape[-3:])
        elif tuple(g.shape[-3:]) != self._shape:
            raise ValueError(f"frames of shape {g.shape[-3:]} after frames of shape {self._shape}")
        p = psnr_frames(g, r, self.data_range)
        s = ssim_frames(g, r, self.data_range, self.window)
        self.psnr_sum += float(p.sum())
        self.ssim_sum += float(s.sum())
        self.num_frames += int(len(p))

    def psnr(self) -> float:
        if not self.num_frames:
            raise ValueError("empty input: no frames were added")
        return self.psnr_sum / self.num_frames

    def ssim(self) -> float:
        if not self.num_frames:
            raise ValueError("empty input: no frames were added")
        return self.ssim_sum / self.num_frames
