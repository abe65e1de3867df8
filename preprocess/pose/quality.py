"""Pose quality: detection rate on real clips and PCK against ground-truth joints.

- Detection rate: the fraction of frames with at least one person detected (and with the tracked main
  actor present). Meaningful on clips where a person is visible in every frame, e.g. the PS7 clips.
- PCK@alpha: the fraction of ground-truth-visible joints whose prediction lies within alpha x a reference
  length of the truth. Reference `torso` = the mean of the two shoulder-to-opposite-hip diagonals of the
  ground truth (the common "torso diameter"); `bbox` = the longer side of the ground-truth joints' box.
  Per frame the predicted person is the one whose box overlaps the ground truth's most; a frame with no
  detection counts all its joints as misses, a missing joint counts as a miss.

Command line: `python -m preprocess.pose.quality real DIR_OR_FILES...` and
`python -m preprocess.pose.quality synthetic ROOT` (both `--json OUT`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from .base import PoseBatch, PoseEstimator
from .tracking import select_main_actor

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov")
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 6, 11, 12


def read_frames(path: Path | str, *, max_frames: int | None = None, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Decode a video with PyAV: (T, H, W, 3) uint8 RGB frames and their (T,) source indices."""
    import av

    frames, idx = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, fr in enumerate(c.decode(s)):
            if i % step == 0:
                frames.append(fr.to_ndarray(format="rgb24"))
                idx.append(i)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    if not frames:
        raise ValueError(f"{path}: no video frames decoded")
    return np.stack(frames), np.asarray(idx, np.int64)


def estimate_video(
    est: PoseEstimator, path: Path | str, *, max_frames: int | None = None, step: int = 1, batch: int = 16
) -> tuple[PoseBatch, tuple[int, int], np.ndarray]:
    """Run `est` over a video's frames in batches: the poses, the frame (H, W) and the source indices."""
    frames, idx = read_frames(path, max_frames=max_frames, step=step)
    parts = [est.estimate(frames[s : s + batch], idx[s : s + batch], Path(path)) for s in range(0, len(frames), batch)]
    return PoseBatch.concatenate(parts), frames.shape[1:3], idx


def detection_stats(poses: PoseBatch) -> dict[str, float]:
    """Frames, detection rate, main-actor rate and mean joint confidence of the main actor."""
    present = poses.person_present.any(1)
    main = select_main_actor(poses.keypoints, poses.boxes)
    has_main = main >= 0
    conf = poses.keypoints[np.nonzero(has_main)[0], main[has_main], :, 2] if has_main.any() else np.zeros((0, 17))
    return {
        "frames": int(len(present)),
        "detection_rate": float(present.mean()) if len(present) else 0.0,
        "main_actor_rate": float(has_main.mean()) if len(has_main) else 0.0,
        "main_joint_conf": float(conf.mean()) if conf.size else 0.0,
        "main_joints_visible": float((conf > 0).mean()) if conf.size else 0.0,
    }


def reference_length(gt_xy: np.ndarray, visible: np.ndarray, norm: str = "torso") -> np.ndarray:
    """Per-frame PCK reference length in pixels (T,), NaN where it cannot be computed."""
    t = len(gt_xy)
    if norm == "bbox":
        out = np.full(t, np.nan)
        for i in range(t):
            v = visible[i]
            if v.sum() >= 2:
                span = gt_xy[i, v].max(0) - gt_xy[i, v].min(0)
                out[i] = float(span.max())
        return out
    if norm != "torso":
        raise ValueError(f"norm must be 'torso' or 'bbox', got {norm!r}")
    d1 = np.linalg.norm(gt_xy[:, L_SHOULDER] - gt_xy[:, R_HIP], axis=-1)
    d2 = np.linalg.norm(gt_xy[:, R_SHOULDER] - gt_xy[:, L_HIP], axis=-1)
    ok1 = visible[:, L_SHOULDER] & visible[:, R_HIP]
    ok2 = visible[:, R_SHOULDER] & visible[:, L_HIP]
    num = np.where(ok1, d1, 0) + np.where(ok2, d2, 0)
    den = ok1.astype(float) + ok2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def pck(
    pred: PoseBatch, gt_xy: np.ndarray, visible: np.ndarray, size_hw: tuple[int, int], *, alpha: float = 0.2, norm: str = "torso"
) -> dict[str, float]:
    """PCK@alpha of predictions against ground-truth pixel joints (T, 17, 2) with visibility (T, 17).

    Returns {"pck", "joints" (counted), "frames_scored", "frames_matched"}; see the module docstring.
    """
    h, w = size_hw
    gt_xy = np.asarray(gt_xy, np.float64)
    visible = np.asarray(visible, bool)
    if len(gt_xy) != len(pred.keypoints):
        raise ValueError(f"{len(pred.keypoints)} predicted frames vs {len(gt_xy)} ground-truth frames")
    ref = reference_length(gt_xy, visible, norm)
    scale = np.array([w, h], np.float64)
    hits = total = scored = matched = 0
    from .yolo import box_iou

    for t in range(len(gt_xy)):
        v = visible[t]
        if not v.any() or not np.isfinite(ref[t]) or ref[t] <= 0:
            continue
        scored += 1
        total += int(v.sum())
        present = np.nonzero(pred.boxes[t, :, 4] > 0)[0]
        if not len(present):
            continue
        g = gt_xy[t, v]
        gbox = np.array([[*g.min(0), *g.max(0)]])
        pboxes = pred.boxes[t, present, :4] * np.array([w, h, w, h])
        j = present[int(np.argmax(box_iou(gbox, pboxes)[0]))]
        matched += 1
        kp = pred.keypoints[t, j]
        d = np.linalg.norm(kp[:, :2] * scale - gt_xy[t], axis=-1)
        ok = v & (kp[:, 2] > 0) & (d <= alpha * ref[t])
        hits += int(ok.sum())
    return {
        "pck": hits / total if total else float("nan"),
        "joints": int(total),
        "frames_scored": int(scored),
        "frames_matched": int(matched),
    }


def _videos(paths: Sequence[Path | str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no such video or folder: {p}")


def measure_real(est: PoseEstimator, paths: Sequence[Path | str], *, max_frames: int | None = None, step: int = 1) -> dict[str, Any]:
    """Detection statistics per video and pooled over frames, for real clips (no ground truth)."""
    per_video = []
    for v in _videos(paths):
        poses, _, _ = estimate_video(est, v, max_frames=max_frames, step=step)
        per_video.append({"video": str(v), **detection_stats(poses)})
        log.info("%s: %s", v.name, per_video[-1])
    if not per_video:
        raise FileNotFoundError(f"no videos found in {list(map(str, paths))}")
    frames = sum(r["frames"] for r in per_video)
    pooled = {k: sum(r[k] * r["frames"] for r in per_video) / frames for k in ("detection_rate", "main_actor_rate", "main_joint_conf", "main_joints_visible")}
    return {"pose_model": est.describe(), "videos": len(per_video), "frames": frames, **pooled, "per_video": per_video}


def measure_synthetic(
    est: PoseEstimator, root: Path | str, *, max_videos: int | None = None, max_frames: int | None = None,
    step: int = 1, alphas: Sequence[float] = (0.1, 0.2, 0.5), norms: Sequence[str] = ("torso", "bbox"),
) -> dict[str, Any]:
    """Detection rate and PCK against the synthetic dataset's ground-truth joints under `root`."""
    from .groundtruth import joints_path_for, load_joints

    root = Path(root)
    videos = [v for v in _videos([root / "UCF-101"]) if joints_path_for(v).is_file()] if (root / "UCF-101").is_dir() else []
    if not videos:
        raise FileNotFoundError(f"{root}: no videos with ground-truth joints (expected UCF-101/<Class>/*.avi and joints/<Class>/*.npz)")
    videos = videos[:max_videos] if max_videos else videos
    acc: dict[str, list[int]] = {}
    det_frames = det_hits = 0
    per_video = []
    for v in videos:
        poses, hw, idx = estimate_video(est, v, max_frames=max_frames, step=step)
        joints, visible = load_joints(joints_path_for(v))
        if idx.max() >= len(joints):
            raise ValueError(f"{v}: {idx.max() + 1} decoded frames but only {len(joints)} ground-truth joint frames")
        row = {"video": str(v.relative_to(root)), **detection_stats(poses)}
        det_frames += len(idx)
        det_hits += int(poses.person_present.any(1).sum())
        for norm in norms:
            for a in alphas:
                r = pck(poses, joints[idx], visible[idx], hw, alpha=a, norm=norm)
                key = f"pck@{a:g}_{norm}"
                row[key] = r["pck"]
                hit_total = acc.setdefault(key, [0, 0])
                hit_total[0] += round(r["pck"] * r["joints"]) if r["joints"] else 0
                hit_total[1] += r["joints"]
        per_video.append(row)
        log.info("%s: %s", v.name, row)
    pooled = {k: (h / n if n else float("nan")) for k, (h, n) in acc.items()}
    return {
        "pose_model": est.describe(), "videos": len(videos), "frames": det_frames,
        "detection_rate": det_hits / det_frames if det_frames else 0.0, **pooled, "per_video": per_video,
    }


def _build(pose: str, threads: int) -> PoseEstimator:
    from . import build_estimator

    return build_estimator(pose, threads=threads) if pose == "yolo" else build_estimator(pose)


def _emit(res: dict, json_out: str | None, keys: Sequence[str]) -> None:
    click.echo(f"pose model: {res['pose_model']['name']}  videos: {res['videos']}  frames: {res['frames']}")
    for k in keys:
        if k in res:
            click.echo(f"  {k:>22}: {res[k]:.4f}")
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2))
        click.echo(f"wrote {json_out}")


def _common(f):
    f = click.option("--pose", default="yolo", show_default=True, help="pose backend")(f)
    f = click.option("--threads", default=1, show_default=True, help="onnxruntime threads (yolo)")(f)
    f = click.option("--max-frames", type=int, default=None, help="frames per video (default: all)")(f)
    f = click.option("--step", default=1, show_default=True, help="use every k-th frame")(f)
    f = click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write results here")(f)
    return f


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log per-video results")
def cli(verbose: bool) -> None:
    """Pose quality: detection rate on real clips, PCK on synthetic ground truth."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@_common
def real(paths, pose, threads, max_frames, step, json_out):
    """Detection rate on real clips (files or folders) where a person is always visible."""
    res = measure_real(_build(pose, threads), paths, max_frames=max_frames, step=step)
    _emit(res, json_out, ("detection_rate", "main_actor_rate", "main_joint_conf", "main_joints_visible"))


@cli.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--max-videos", type=int, default=None, help="first N videos only")
@_common
def synthetic(root, max_videos, pose, threads, max_frames, step, json_out):
    """Detection rate and PCK against a `csvr synth` dataset's ground-truth joints."""
    res = measure_synthetic(_build(pose, threads), root, max_videos=max_videos, max_frames=max_frames, step=step)
    _emit(res, json_out, ["detection_rate"] + [k for k in res if k.startswith("pck@")])


if __name__ == "__main__":
    cli()
