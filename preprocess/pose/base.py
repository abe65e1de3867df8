"""The pose-estimator interface shared by every backend (docs/contracts.md section 3).

A backend turns a batch of RGB frames of one video into `PoseBatch`: up to P people per frame, COCO-17
keypoints normalised to the frame (x/W, y/H) with a confidence, and a normalised box with a score.
Missing people and joints are all-zero rows: a backend never invents a detection.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tracking import TrackerOptions

NUM_JOINTS = 17
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


@dataclass
class PoseBatch:
    """Poses of B frames: `keypoints` (B, P, 17, 3) float32 and `boxes` (B, P, 5) float32.

    Keypoints hold x/W, y/H in [0, 1] and a confidence; boxes hold x1/W, y1/H, x2/W, y2/H and a score.
    People are sorted by score, best first; an absent person or joint is all zeros.
    """

    keypoints: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        kp, bx = self.keypoints, self.boxes
        if kp.ndim != 4 or kp.shape[2:] != (NUM_JOINTS, 3):
            raise ValueError(f"PoseBatch.keypoints must be (B, P, 17, 3), got {kp.shape}")
        if bx.ndim != 3 or bx.shape[2] != 5 or bx.shape[:2] != kp.shape[:2]:
            raise ValueError(f"PoseBatch.boxes must be (B, P, 5) matching keypoints {kp.shape[:2]}, got {bx.shape}")
        self.keypoints = np.ascontiguousarray(kp, dtype=np.float32)
        self.boxes = np.ascontiguousarray(bx, dtype=np.float32)

    @classmethod
    def empty(cls, batch: int, max_people: int) -> "PoseBatch":
        """A batch in which nobody was detected."""
        return cls(np.zeros((batch, max_people, NUM_JOINTS, 3), np.float32), np.zeros((batch, max_people, 5), np.float32))

    @property
    def person_present(self) -> np.ndarray:
        """(B, P) bool: a person was detected in that slot."""
        return self.boxes[..., 4] > 0

    @staticmethod
    def concatenate(batches: list["PoseBatch"]) -> "PoseBatch":
        """Join batches along the frame axis."""
        return PoseBatch(np.concatenate([b.keypoints for b in batches]), np.concatenate([b.boxes for b in batches]))


def check_frames(frames: np.ndarray, source_indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (B, H, W, 3) uint8 batch and its (B,) source indices; returns both as arrays."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (B, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    if source_indices is None:
        source_indices = np.arange(len(frames))
    source_indices = np.asarray(source_indices, dtype=np.int64).reshape(-1)
    if len(source_indices) != len(frames):
        raise ValueError(f"source_indices has {len(source_indices)} entries for {len(frames)} frames")
    return frames, source_indices


class PoseEstimator(abc.ABC):
    """A pose backend. Subclasses set `name`, `weights_sha256` and `max_people` and implement `estimate`.

    `tracker` is the main-actor rule to use with this estimator's poses (set by `build_estimator` from
    `track_*` options; `select_main_actor(kp, boxes, est.tracker)`).
    """

    name: str = "abstract"
    weights_sha256: str | None = None
    max_people: int = 2
    tracker: TrackerOptions = TrackerOptions()

    @abc.abstractmethod
    def estimate(self, frames_rgb_uint8: np.ndarray, source_indices: np.ndarray, video_path: Path | str) -> PoseBatch:
        """Poses for B frames of the video at `video_path` (`source_indices` = their source frame numbers)."""

    def describe(self) -> dict:
        """Model identity recorded in the store's `pose_model` attribute."""
        return {"name": self.name, "weights_sha256": self.weights_sha256, "tracker": self.tracker.to_json()}
