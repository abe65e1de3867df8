"""Pose estimation for preprocessing: backends behind one interface (docs/contracts.md section 3).

`build_estimator(name, **options)` returns a `PoseEstimator` whose `estimate(frames, source_indices,
video_path)` gives a `PoseBatch`. Backends are imported only when built (onnxruntime, av, openpifpaf).
"""

from __future__ import annotations

from typing import Any

from .base import COCO_KEYPOINTS, NUM_JOINTS, PoseBatch, PoseEstimator

BACKENDS: dict[str, str] = {
    "yolo": "preprocess.pose.yolo:YoloPoseEstimator",
    "openpifpaf": "preprocess.pose.openpifpaf_backend:OpenPifPafPoseEstimator",
    "groundtruth": "preprocess.pose.groundtruth:GroundTruthPoseEstimator",
}


def build_estimator(name: str, **options: Any) -> PoseEstimator:
    """Build the pose backend `name` ("yolo" | "openpifpaf" | "groundtruth") with its keyword options."""
    import importlib

    if name not in BACKENDS:
        raise ValueError(f"unknown pose backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)(**options)


__all__ = ["BACKENDS", "COCO_KEYPOINTS", "NUM_JOINTS", "PoseBatch", "PoseEstimator", "build_estimator"]
