"""Baselines for the video generators' PSNR / SSIM: what trivial answers and a plain autoencoder score.

The generators' numbers alone cannot be read: 16 dB reconstruction PSNR may be a good or a useless
model depending on the data. These baselines are scored on the SAME test frames (the generator's
output size, value range [0, 1], the same centre crop: the `real` / `future_real` frames of the pretext
outputs) with the same `evaluate.metrics` PSNR / SSIM:

- **training mean frame**: the per-pixel mean frame over (the first `max_train_clips` of) the train
  split's clips, predicted for every test frame (reconstruction and prediction). The least informative
  answer: a generator at or below it has learned nothing about the clip.
- **first frame repeated** (reconstruction): the clip's own first frame copied to every frame, scored
  on frames 2..T (frame 1 is exact by construction; with it, the per-frame PSNR cap of 100 dB would
  add (100 - PSNR) / T dB).
- **last observed frame repeated** (prediction): the current clip's last frame copied over the future
  clip.
- **conv autoencoder** (reconstruction, an upper reference): a small per-frame convolutional
  autoencoder (`FrameAutoencoder`) trained on train-split frames at the same resolution for a fixed
  number of seeded steps, then applied to the test frames.

Everything streams: the train clips are folded into a float64 sum (the mean frame) and a bounded,
seeded reservoir of frames (the autoencoder's training set, `buffer_frames` frames), the test frames
into `evaluate.metrics.FrameQualityAccumulator` sums.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from csvr.evaluate import metrics as M

log = logging.getLogger(__name__)


class NotAClipBatch(ValueError):
    """A train batch whose `clip` is not the loader's (B, 3, T, H, W): no train-side baselines."""


@dataclass(frozen=True)
class VideoBaselineConfig:
    """Settings of the baselines (`evaluate.pipeline.evaluate_run(video_baselines=...)`)."""

    # train clips for the mean frame and the reservoir, the FIRST ones in loader order (None: every clip
    # the train pass yields; the sum is one frame, the reservoir bounded, so memory does not grow). A
    # limit on an eval loader (a video's clips in a row) covers only the first videos: a biased subset.
    max_train_clips: int | None = None
    buffer_frames: int = 1024          # reservoir of train frames the autoencoder trains on
    ae_steps: int = 1000               # autoencoder optimisation steps (0: no autoencoder); ~10-20 s at 32x32
    ae_batch: int = 32                 # frames per step
    ae_lr: float = 2e-3                # Adam
    ae_width: int = 16                 # channels of the first conv (2x in the second)
    ae_code: int = 8                   # channels of the code, at 1/4 of the frame side
    seed: int = 0


def clip_frames(clip: Any, size: int) -> np.ndarray:
    """A normalised eval clip (B, 3, T, H, W) (the loader's `clip`) -> (B, T, size, size, 3) float32
    in [0, 1]: the generators' target (`train.steps.video_target`), as `evaluate.components` scores it."""
    import torch

    from csvr.train.steps import video_target

    x = clip if isinstance(clip, torch.Tensor) else torch.as_tensor(np.asarray(clip))
    with torch.no_grad():
        x = video_target(x.float(), int(size))
        x = ((x + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)
    return M.as_numpy(x).astype(np.float32)


def frame_size(outputs: Iterable[Mapping[str, Any]]) -> int | None:
    """The generator's frame side from pretext outputs (`real` or `future_real`), None without them."""
    for o in outputs:
        for k in ("real", "future_real"):
            if k in o and o[k] is not None:
                return int(np.shape(o[k])[-2])
    return None


# --------------------------------------------------------------------------------------------------
# The autoencoder
# --------------------------------------------------------------------------------------------------


def _autoencoder(width: int, code: int) -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(2 * width, code, 3, 1, 1),                      # the code: code x H/4 x W/4
        nn.ConvTranspose2d(code, 2 * width, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(width, 3, 3, 1, 1), nn.Sigmoid(),
    )


class FrameAutoencoder:
    """A plain per-frame conv autoencoder (2 strided convs down, 2 transposed convs up), trained with
    MSE on frames in [0, 1]. Seeded: the same frames and settings give the same weights (on one
    machine / thread count)."""

    def __init__(self, cfg: VideoBaselineConfig) -> None:
        import torch

        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net = _autoencoder(cfg.ae_width, cfg.ae_code)
        self.train_mse: float | None = None
        self.seconds = 0.0

    def code_fraction(self, size: int) -> float:
        """Code values per frame / pixel values per frame."""
        side = -(-size // 4)
        return self.cfg.ae_code * side * side / (3 * size * size)

    def fit(self, frames: np.ndarray) -> "FrameAutoencoder":
        """`ae_steps` Adam steps on minibatches of `frames` (N, H, W, 3) drawn with a seeded generator."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        if not len(frames):
            raise ValueError("no train frames to fit the autoencoder on")
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        g = torch.Generator().manual_seed(self.cfg.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.ae_lr)
        self.net.train()
        losses = []
        threads = torch.get_num_threads()
        # one thread: the net is tiny (more threads only contend, with loader workers too), and the
        # sums are then the same whatever the machine's core count
        torch.set_num_threads(1)
        try:
            with torch.enable_grad():
                for _ in range(self.cfg.ae_steps):
                    idx = torch.randint(len(x), (min(self.cfg.ae_batch, len(x)),), generator=g)
                    xb = x[idx]
                    loss = F.mse_loss(self._forward(xb), xb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach().item())
        finally:
            torch.set_num_threads(threads)
        self.net.eval()
        tail = losses[-max(1, len(losses) // 10):]
        self.train_mse = float(np.mean(tail)) if tail else None
        self.seconds = time.perf_counter() - t0
        return self

    def _forward(self, x: Any) -> Any:
        import torch.nn.functional as F

        y = self.net(x)
        if y.shape[-2:] != x.shape[-2:]:  # sides not divisible by 4
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y

    def __call__(self, frames: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(..., H, W, 3) in [0, 1] -> the reconstructions, same shape, float32."""
        import torch

        f = np.asarray(frames, dtype=np.float32)
        flat = f.reshape((-1,) + f.shape[-3:])
        out = np.empty_like(flat)
        with torch.no_grad():
            for i in range(0, len(flat), chunk):
                xb = torch.from_numpy(np.ascontiguousarray(flat[i:i + chunk])).permute(0, 3, 1, 2)
                out[i:i + chunk] = self._forward(xb).permute(0, 2, 3, 1).numpy()
        return out.reshape(f.shape)


# --------------------------------------------------------------------------------------------------
# Train side: mean frame + reservoir, streaming
# --------------------------------------------------------------------------------------------------


class TrainFrames:
    """Streams train clips (B, T, H, W, 3) in [0, 1]: their float64 per-pixel sum (the mean frame) and a
    seeded reservoir of at most `buffer_frames` frames (uniform over all frames seen), for at most
    `max_train_clips` clips. Memory: one frame of sums + the reservoir, whatever the split's size."""

    def __init__(self, size: int, cfg: VideoBaselineConfig | None = None) -> None:
        self.size = int(size)
        self.cfg = cfg or VideoBaselineConfig()
        self._sum: np.ndarray | None = None
        self.num_clips = 0
        self.num_frames = 0
        self._rng = np.random.default_rng(self.cfg.seed)
        self._buf: np.ndarray | None = None
        self.source = ""
        self.skipped: str | None = None  # why the train clips were not used (batches off the contract)

    @property
    def full(self) -> bool:
        return (self.skipped is not None
                or (self.cfg.max_train_clips is not None and self.num_clips >= self.cfg.max_train_clips))

    def add_frames(self, frames: Any) -> None:
        """One batch of clips as frames (B, T, H, W, 3) in [0, 1] (clips beyond the limit are ignored)."""
        f = np.asarray(M.as_numpy(frames), dtype=np.float32)
        if f.ndim != 5 or f.shape[-1] != 3:
            raise ValueError(f"expected clips (B, T, H, W, 3), got shape {f.shape}")
        if self.cfg.max_train_clips is not None:
            f = f[: max(0, self.cfg.max_train_clips - self.num_clips)]
        if not len(f):
            return
        flat = f.reshape((-1,) + f.shape[-3:])
        s = flat.astype(np.float64).sum(axis=0)
        if self._sum is None:
            self._sum = s
            cap = max(1, int(self.cfg.buffer_frames))
            self._buf = np.empty((cap,) + flat.shape[1:], dtype=np.float32)
        elif self._sum.shape != s.shape:
            raise ValueError(f"train frames of shape {s.shape} after {self._sum.shape}")
        else:
            self._sum += s
        cap = len(self._buf)
        for frame in flat:  # reservoir sampling (Algorithm R), seeded
            if self.num_frames < cap:
                self._buf[self.num_frames] = frame
            else:
                j = int(self._rng.integers(0, self.num_frames + 1))
                if j < cap:
                    self._buf[j] = frame
            self.num_frames += 1
        self.num_clips += len(f)

    def add_batch(self, batch: Mapping[str, Any]) -> None:
        """One loader batch (its normalised `clip`), converted with `clip_frames` at `size`."""
        if self.full:
            return
        clip = batch.get("clip")
        shape = tuple(np.shape(clip)) if clip is not None else ()
        if len(shape) != 5 or shape[1] != 3:
            raise NotAClipBatch(f"train batch clip of shape {shape}, not the loader's (B, 3, T, H, W)")
        if self.cfg.max_train_clips is not None:
            clip = clip[: self.cfg.max_train_clips - self.num_clips]
        self.add_frames(clip_frames(clip, self.size))

    def tap(self, batches: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Yield `batches` unchanged, folding each into the sums on the way (shares another pass)."""
        for batch in batches:
            self._add_checked(batch)
            yield batch

    def _add_checked(self, batch: Mapping[str, Any]) -> None:
        try:
            self.add_batch(batch)
        except NotAClipBatch as e:
            self.skipped = str(e)
            log.warning("video baselines: %s; no mean-frame or autoencoder baseline", e)

    def consume(self, batches: Iterable[Mapping[str, Any]]) -> None:
        """A pass of its own over `batches`, stopped once `max_train_clips` clips are in."""
        for batch in batches:
            if self.full:
                break
            self._add_checked(batch)

    def mean_frame(self) -> np.ndarray:
        """(H, W, 3) float32 per-pixel mean over every frame added."""
        if self._sum is None:
            raise ValueError("no train clips were added")
        return (self._sum / self.num_frames).astype(np.float32)

    def buffer(self) -> np.ndarray:
        return self._buf[: min(self.num_frames, len(self._buf))]

    def fit(self) -> "VideoBaselines":
        """The baselines: the mean frame, and the autoencoder trained on the reservoir (`ae_steps` > 0)."""
        ae = None
        if self.cfg.ae_steps > 0:
            ae = FrameAutoencoder(self.cfg).fit(self.buffer())
            log.info("video baselines: conv autoencoder, %d steps on %d train frames in %.1f s (train MSE %.4f)",
                     self.cfg.ae_steps, len(self.buffer()), ae.seconds, ae.train_mse)
        return VideoBaselines(self.mean_frame(), ae, self)


# --------------------------------------------------------------------------------------------------
# Test side: scoring
# --------------------------------------------------------------------------------------------------

RECONSTRUCTION = ("mean_frame", "first_frame", "autoencoder")
PREDICTION = ("mean_frame", "last_frame")
LABELS = {
    "mean_frame": "training mean frame",
    "first_frame": "first frame repeated (frames 2..T)",
    "last_frame": "last observed frame repeated",
    "autoencoder": "conv autoencoder (upper reference)",
}


class VideoBaselines:
    """Scores the baselines on test frames, batch by batch (`add_reconstruction`, `add_prediction`),
    into per-baseline `FrameQualityAccumulator`s; `section()` is the metrics.json dict."""

    def __init__(self, mean_frame: np.ndarray | None = None, autoencoder: FrameAutoencoder | None = None,
                 train: TrainFrames | None = None) -> None:
        self.mean = None if mean_frame is None else np.asarray(mean_frame, dtype=np.float32)
        self.ae = autoencoder
        self.train = train
        self.rec = {k: M.FrameQualityAccumulator() for k in RECONSTRUCTION}
        self.pred = {k: M.FrameQualityAccumulator() for k in PREDICTION}
        self.num_clips = {"reconstruction": 0, "prediction": 0}

    def _mean_like(self, real: np.ndarray) -> np.ndarray | None:
        if self.mean is None:
            return None
        if self.mean.shape != real.shape[-3:]:
            raise ValueError(f"mean frame {self.mean.shape} vs test frames {real.shape[-3:]}")
        return np.broadcast_to(self.mean, real.shape)

    def add_reconstruction(self, real: Any) -> None:
        """Test clips (B, T, H, W, 3) in [0, 1], the generator's reconstruction targets."""
        r = np.asarray(M.as_numpy(real), dtype=np.float32)
        mean = self._mean_like(r)
        if mean is not None:
            self.rec["mean_frame"].add(mean, r)
        if r.shape[1] > 1:
            self.rec["first_frame"].add(np.broadcast_to(r[:, :1], r[:, 1:].shape), r[:, 1:])
        if self.ae is not None:
            self.rec["autoencoder"].add(self.ae(r), r)
        self.num_clips["reconstruction"] += len(r)

    def add_prediction(self, observed: Any, future: Any) -> None:
        """Current clips (B, T, H, W, 3) and their future clips (B, T', H, W, 3), in [0, 1]."""
        f = np.asarray(M.as_numpy(future), dtype=np.float32)
        mean = self._mean_like(f)
        if mean is not None:
            self.pred["mean_frame"].add(mean, f)
        if observed is not None:
            o = np.asarray(M.as_numpy(observed), dtype=np.float32)
            self.pred["last_frame"].add(np.broadcast_to(o[:, -1:], f.shape), f)
        self.num_clips["prediction"] += len(f)

    def section(self) -> dict[str, Any]:
        """{"reconstruction": {name: {psnr, ssim, num_frames}}, "prediction": {...}, "train": {...},
        "autoencoder": {...}}; baselines without frames are left out."""
        def scores(accs: Mapping[str, M.FrameQualityAccumulator]) -> dict[str, Any]:
            return {k: {"psnr": a.psnr(), "ssim": a.ssim(), "num_frames": a.num_frames}
                    for k, a in accs.items() if a.num_frames}

        out: dict[str, Any] = {}
        if self.num_clips["reconstruction"]:
            out["reconstruction"] = scores(self.rec)
        if self.num_clips["prediction"]:
            out["prediction"] = scores(self.pred)
        out["num_test_clips"] = dict(self.num_clips)
        if self.train is not None:
            out["train"] = {"clips": self.train.num_clips, "frames": self.train.num_frames,
                            "max_clips": self.train.cfg.max_train_clips, "source": self.train.source}
        if self.ae is not None:
            cfg = self.ae.cfg
            size = int(self.mean.shape[0]) if self.mean is not None else 0
            out["autoencoder"] = {
                "steps": cfg.ae_steps, "batch": cfg.ae_batch, "lr": cfg.ae_lr, "width": cfg.ae_width,
                "code": cfg.ae_code, "seed": cfg.seed, "train_frames": int(len(self.train.buffer())) if self.train else None,
                "code_fraction": self.ae.code_fraction(size) if size else None,
                "train_mse": self.ae.train_mse, "seconds": round(self.ae.seconds, 2),
            }
        return out
