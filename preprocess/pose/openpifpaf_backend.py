"""The optional `openpifpaf` pose backend (the design's original estimator).

openpifpaf is not a project dependency: its last release pins torch 1.13 and downloads its checkpoints
from GitHub at run time. It can be built against the project's torch (see docs/pose.md) and used here
only with a local checkpoint file. Both requirements are checked up front with a clear message.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from .base import NUM_JOINTS, PoseBatch, PoseEstimator, check_frames

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install --no-build-isolation --no-deps openpifpaf==0.13.11 (after its pure-Python dependencies; "
    "see docs/pose.md)"
)


class OpenPifPafPoseEstimator(PoseEstimator):
    """openpifpaf's Predictor on a local checkpoint; people sorted by score, best `max_people` kept."""

    name = "openpifpaf"

    def __init__(self, *, checkpoint: Path | str | None = None, max_people: int = 2, batch_size: int = 8) -> None:
        if importlib.util.find_spec("openpifpaf") is None:
            raise ImportError(f"the 'openpifpaf' pose backend needs the openpifpaf package, which is not installed: {INSTALL_HINT}")
        if checkpoint is None:
            raise ValueError(
                "the 'openpifpaf' pose backend needs checkpoint=PATH to a local .pkl/.pt checkpoint: openpifpaf "
                "downloads its weights from GitHub at run time, which is not possible offline"
            )
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"openpifpaf checkpoint not found: {ckpt} (pass a local checkpoint file)")
        from csvr.contracts import sha256_file

        self.checkpoint = ckpt.resolve()
        self.weights_sha256 = sha256_file(self.checkpoint)
        self.max_people, self.batch_size = max_people, batch_size
        # openpifpaf checkpoints are pickled models: torch >= 2.6 refuses them unless weights_only=False
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        import openpifpaf

        self._predictor = openpifpaf.Predictor(checkpoint=str(self.checkpoint))
        self.name = f"openpifpaf:{self.checkpoint.name}"

    def estimate(self, frames_rgb_uint8: np.ndarray, source_indices: np.ndarray, video_path: Path | str) -> PoseBatch:
        frames, _ = check_frames(frames_rgb_uint8, source_indices)
        b, h, w, _ = frames.shape
        out = PoseBatch.empty(b, self.max_people)
        for i, (preds, _gt, _meta) in enumerate(self._predictor.numpy_images(list(frames))):
            preds = sorted(preds, key=lambda a: -float(a.score))[: self.max_people]
            for slot, ann in enumerate(preds):
                data = np.asarray(ann.data, np.float32).reshape(NUM_JOINTS, 3)
                ok = data[:, 2] > 0
                out.keypoints[i, slot, ok, 0] = np.clip(data[ok, 0] / w, 0, 1)
                out.keypoints[i, slot, ok, 1] = np.clip(data[ok, 1] / h, 0, 1)
                out.keypoints[i, slot, ok, 2] = data[ok, 2]
                x, y, bw, bh = (float(v) for v in ann.bbox())
                out.boxes[i, slot] = [max(0, x / w), max(0, y / h), min(1, (x + bw) / w), min(1, (y + bh) / h), float(ann.score)]
        return out
