"""The `groundtruth` pose backend: the synthetic generator's joints in the estimator format.

Used to build stores whose poses are exact (tests, the demo, and measuring the other backends). A video
`<root>/UCF-101/<Class>/<stem>.avi` has its joints in `<root>/joints/<Class>/<stem>.npz` with `joints`
float32 (T, 17, 2) in source pixels and `visible` bool (T, 17) (docs/contracts.md section 2). Any video
without such a file is refused: there is no ground truth to give.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import NUM_JOINTS, PoseBatch, PoseEstimator, check_frames

log = logging.getLogger(__name__)


def joints_path_for(video_path: Path | str) -> Path:
    """`<root>/joints/<Class>/<stem>.npz` for a video at `<root>/<any folder>/<Class>/<stem>.<ext>`."""
    v = Path(video_path)
    if len(v.parts) < 3:
        raise ValueError(f"{v}: cannot locate ground-truth joints (expected <root>/<folder>/<Class>/<video>)")
    return v.parent.parent.parent / "joints" / v.parent.name / f"{v.stem}.npz"


def load_joints(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a joints file: (joints float32 (T, 17, 2), visible bool (T, 17))."""
    path = Path(path)
    try:
        with np.load(path) as z:
            if "joints" not in z or "visible" not in z:
                raise ValueError(f"{path}: joints file must hold arrays 'joints' and 'visible', has {sorted(z.files)}")
            joints, visible = z["joints"].astype(np.float32), z["visible"].astype(bool)
    except (OSError, EOFError) as e:  # np.load raises these for unreadable/corrupt files
        raise ValueError(f"{path}: unreadable joints file ({e})") from e
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 2):
        raise ValueError(f"{path}: 'joints' must be (T, 17, 2), got {joints.shape}")
    if visible.shape != joints.shape[:2]:
        raise ValueError(f"{path}: 'visible' must be (T, 17) = {joints.shape[:2]}, got {visible.shape}")
    return joints, visible


def joints_to_pose(joints: np.ndarray, visible: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel joints (T, 17, 2) + visibility -> keypoints (T, 17, 3) and boxes (T, 5), normalised.

    Visible joints get confidence 1, invisible ones are all zeros. The box spans the visible joints
    (score 1); a frame with no visible joint has an all-zero box.
    """
    t = len(joints)
    kp = np.zeros((t, NUM_JOINTS, 3), np.float32)
    xy = joints / np.array([width, height], np.float32)
    vis = visible & np.isfinite(xy).all(-1)
    kp[vis, :2] = np.clip(xy[vis], 0.0, 1.0)
    kp[vis, 2] = 1.0
    boxes = np.zeros((t, 5), np.float32)
    any_vis = vis.any(1)
    if any_vis.any():
        big = np.where(vis[..., None], kp[..., :2], np.inf)
        small = np.where(vis[..., None], kp[..., :2], -np.inf)
        lo, hi = big.min(1), small.max(1)
        boxes[any_vis, 0:2] = lo[any_vis]
        boxes[any_vis, 2:4] = hi[any_vis]
        boxes[any_vis, 4] = 1.0
    return kp, boxes


class GroundTruthPoseEstimator(PoseEstimator):
    """Poses read from the synthetic dataset's joint files (person slot 0; other slots empty)."""

    name = "groundtruth"
    weights_sha256 = None

    def __init__(self, *, max_people: int = 2, root: Path | str | None = None) -> None:
        if max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {max_people}")
        self.max_people = max_people
        self.root = Path(root) if root else None
        self._cache: tuple[Path, np.ndarray, np.ndarray] | None = None

    def _joints_for(self, video_path: Path) -> tuple[np.ndarray, np.ndarray]:
        if self.root is not None:
            rel = video_path.resolve().relative_to(self.root.resolve()) if video_path.is_absolute() else video_path
            jp = joints_path_for(self.root / rel)
        else:
            jp = joints_path_for(video_path)
        if self._cache is not None and self._cache[0] == jp:
            return self._cache[1], self._cache[2]
        if not jp.is_file():
            raise FileNotFoundError(
                f"{video_path}: no ground-truth joints at {jp}; the 'groundtruth' pose backend works only on "
                "datasets made by `csvr synth` (use --pose yolo for other datasets)"
            )
        joints, visible = load_joints(jp)
        self._cache = (jp, joints, visible)
        return joints, visible

    def estimate(self, frames_rgb_uint8: np.ndarray, source_indices: np.ndarray, video_path: Path | str) -> PoseBatch:
        frames, idx = check_frames(frames_rgb_uint8, source_indices)
        if video_path is None:
            raise ValueError("the 'groundtruth' pose backend needs video_path to find the joints file")
        joints, visible = self._joints_for(Path(video_path))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(joints)):
            raise IndexError(
                f"{video_path}: source frame indices {idx.min()}..{idx.max()} outside the {len(joints)} frames "
                "of its ground-truth joints"
            )
        src_size = self._source_size(Path(video_path))
        kp, boxes = joints_to_pose(joints[idx], visible[idx], *src_size)
        out = PoseBatch.empty(len(idx), self.max_people)
        out.keypoints[:, 0] = kp
        out.boxes[:, 0] = boxes
        return out

    def _source_size(self, video_path: Path) -> tuple[int, int]:
        """(width, height) of the source video the joints refer to (joints are in source pixels)."""
        size = getattr(self, "_size_cache", None)
        if size is not None and size[0] == video_path:
            return size[1]
        try:
            import av

            with av.open(str(video_path)) as c:
                s = c.streams.video[0]
                wh = (int(s.codec_context.width), int(s.codec_context.height))
        except Exception as e:  # noqa: BLE001 - av raises many types; all mean "cannot read the size"
            raise ValueError(f"{video_path}: cannot read the video size needed to normalise its joints ({e})") from e
        self._size_cache = (video_path, wh)
        return wh
