"""Pose estimation for preprocessing: backends behind one interface (docs/contracts.md section 3).

`build_estimator(name, **options)` returns a `PoseEstimator` whose `estimate(frames, source_indices,
video_path)` gives a `PoseBatch`. Backends are imported only when built (onnxruntime, av, openpifpaf).
Options named `track_<field>` are not the backend's: they set the estimator's `tracker`
(`preprocess.pose.tracking.TrackerOptions`, the main-actor rule used with its poses).
"""

from __future__ import annotations

from typing import Any

from .base import COCO_KEYPOINTS, NUM_JOINTS, PoseBatch, PoseEstimator

BACKENDS: dict[str, str] = {
    "yolo": "csvr.preprocess.pose.yolo:YoloPoseEstimator",
    "openpifpaf": "csvr.preprocess.pose.openpifpaf_backend:OpenPifPafPoseEstimator",
    "groundtruth": "csvr.preprocess.pose.groundtruth:GroundTruthPoseEstimator",
}


def build_estimator(name: str, **options: Any) -> PoseEstimator:
    """Build the pose backend `name` ("yolo" | "openpifpaf" | "groundtruth") with its keyword options.

    `track_<field>=value` options (e.g. `track_min_frames=8`) set `estimator.tracker`, the
    `TrackerOptions` to select the main actor with (recorded in `describe()["tracker"]`).
    """
    import importlib

    from .tracking import split_tracker_options

    if name not in BACKENDS:
        raise ValueError(f"unknown pose backend {name!r}; choose one of {sorted(BACKENDS)}")
    backend_options, tracker = split_tracker_options(options)
    module, attr = BACKENDS[name].split(":")
    est = getattr(importlib.import_module(module), attr)(**backend_options)
    est.tracker = tracker
    return est


__all__ = ["BACKENDS", "COCO_KEYPOINTS", "NUM_JOINTS", "PoseBatch", "PoseEstimator", "build_estimator"]
