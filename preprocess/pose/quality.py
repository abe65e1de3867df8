"""Pose quality: detection rate on real clips and PCK against ground-truth joints.

- Detection rate: the fraction of frames with at least one person detected (and with the tracked main
  actor present). Meaningful on clips where a person is visible in every frame, e.g. the PS7 clips.
- PCK@alpha: the fraction of ground-truth-visible joints whose prediction lies within alpha x a reference
  length of the truth. Reference `torso` = the mean of the two shoulder-to-opposite-hip diagonals of the
  ground truth (the common "torso diameter"); `bbox` = the longer side of the ground-truth joints' box.
  Per frame the predicted person is the one whose box overlaps the ground truth's most; a frame with no
  detection counts all its joints as misses, a missing joint counts as a miss.
- Settings sweep (`sweep`): for each pose input (network `imgsz` x the frame the model sees: the source
  capped to `pose_cap` as the pipeline does, or the stored 128x171 frame), detection threshold and
  main-actor tracker setting: frame coverage (fraction of frames with a main actor) on real clips, false
  main actors on person-free real clips, PCK on synthetic ground truth, and frames per CPU-second of the
  pose estimator. The network runs once per video and input (at the lowest threshold); thresholds and
  trackers are applied to its output. `table` prints the results of one or more sweeps as a markdown table.

Command line: `python -m csvr.preprocess.pose.quality real DIR_OR_FILES...`,
`python -m csvr.preprocess.pose.quality synthetic ROOT` (both `--json OUT`),
`python -m csvr.preprocess.pose.quality sweep --real DIR --synthetic ROOT --input 320:cap320 ... --json OUT` and
`python -m csvr.preprocess.pose.quality table OUT...`; `crop-negatives REAL_ROOT OUT` writes person-free crops
of the real clips for `sweep --negative`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from .base import PoseBatch, PoseEstimator
from .tracking import TrackerOptions, select_main_actor

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


STORED_SIZE = (128, 171)  # the pipeline's default stored frame (H, W)


def frame_variant_size(variant: str, height: int, width: int) -> tuple[int, int]:
    """(H, W) of a frame variant of a height x width source: `source`, `cap<N>` (the long side capped to
    N, as the pipeline's `pose_cap=N` feeds the pose model), `stored` (128x171) or `<H>x<W>`."""
    from csvr.preprocess.video import pose_size

    if variant == "source":
        return height, width
    if variant == "stored":
        return STORED_SIZE
    if variant.startswith("cap") and variant[3:].isdigit():
        return pose_size(height, width, int(variant[3:]))
    h, sep, w = variant.partition("x")
    if sep and h.isdigit() and w.isdigit():
        return int(h), int(w)
    raise ValueError(f"frame variant must be source, stored, cap<N> or <H>x<W>, got {variant!r}")


def read_frame_variants(
    path: Path | str, variants: Sequence[str], *, max_frames: int | None = None, step: int = 1
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode a video once into several frame variants (`frame_variant_size`), each (T, H, W, 3) uint8
    RGB, resized by FFmpeg's scaler as the pipeline does; and the (T,) source indices."""
    import av

    out: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    idx: list[int] = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, fr in enumerate(c.decode(s)):
            if i % step:
                continue
            for v in variants:
                h, w = frame_variant_size(v, fr.height, fr.width)
                same = (h, w) == (fr.height, fr.width)
                out[v].append(fr.to_ndarray(format="rgb24") if same else fr.to_ndarray(width=w, height=h, format="rgb24"))
            idx.append(i)
            if max_frames is not None and len(idx) >= max_frames:
                break
    if not idx:
        raise ValueError(f"{path}: no video frames decoded")
    return {v: np.stack(f) for v, f in out.items()}, np.asarray(idx, np.int64)


def estimate_video(
    est: PoseEstimator, path: Path | str, *, max_frames: int | None = None, step: int = 1, batch: int = 16
) -> tuple[PoseBatch, tuple[int, int], np.ndarray]:
    """Run `est` over a video's frames in batches: the poses, the frame (H, W) and the source indices."""
    frames, idx = read_frames(path, max_frames=max_frames, step=step)
    parts = [est.estimate(frames[s : s + batch], idx[s : s + batch], Path(path)) for s in range(0, len(frames), batch)]
    return PoseBatch.concatenate(parts), frames.shape[1:3], idx


def detection_stats(poses: PoseBatch, tracker: TrackerOptions | None = None) -> dict[str, float]:
    """Frames, detection rate, main-actor rate and mean joint confidence of the main actor."""
    present = poses.person_present.any(1)
    main = select_main_actor(poses.keypoints, poses.boxes, tracker)
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
    from csvr.boxes import box_iou

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
        per_video.append({"video": str(v), **detection_stats(poses, getattr(est, "tracker", None))})
        log.info("%s: %s", v.name, per_video[-1])
    if not per_video:
        raise FileNotFoundError(f"no videos found in {list(map(str, paths))}")
    frames = sum(r["frames"] for r in per_video)
    pooled = {k: sum(r[k] * r["frames"] for r in per_video) / frames for k in ("detection_rate", "main_actor_rate", "main_joint_conf", "main_joints_visible")}
    return {"pose_model": est.describe(), "videos": len(per_video), "frames": frames, **pooled, "per_video": per_video}


def synthetic_videos(root: Path | str, max_videos: int | None = None) -> list[Path]:
    """The videos of a `csvr synth` dataset that have ground-truth joints (first `max_videos`)."""
    from .groundtruth import joints_path_for

    root = Path(root)
    videos = [v for v in _videos([root / "UCF-101"]) if joints_path_for(v).is_file()] if (root / "UCF-101").is_dir() else []
    if not videos:
        raise FileNotFoundError(f"{root}: no videos with ground-truth joints (expected UCF-101/<Class>/*.avi and joints/<Class>/*.npz)")
    return videos[:max_videos] if max_videos else videos


def measure_synthetic(
    est: PoseEstimator, root: Path | str, *, max_videos: int | None = None, max_frames: int | None = None,
    step: int = 1, alphas: Sequence[float] = (0.1, 0.2, 0.5), norms: Sequence[str] = ("torso", "bbox"),
) -> dict[str, Any]:
    """Detection rate and PCK against the synthetic dataset's ground-truth joints under `root`."""
    from .groundtruth import joints_path_for, load_joints

    root = Path(root)
    videos = synthetic_videos(root, max_videos)
    acc: dict[str, list[int]] = {}
    det_frames = det_hits = 0
    per_video = []
    for v in videos:
        poses, hw, idx = estimate_video(est, v, max_frames=max_frames, step=step)
        joints, visible = load_joints(joints_path_for(v))
        if idx.max() >= len(joints):
            raise ValueError(f"{v}: {idx.max() + 1} decoded frames but only {len(joints)} ground-truth joint frames")
        row = {"video": str(v.relative_to(root)), **detection_stats(poses, getattr(est, "tracker", None))}
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


# ---------------------------------------------------------------- settings sweep

DEFAULT_TRACKERS = {  # "none": no support needed, any frame elsewhere = someone else (the tracker before issue 12 item 6)
    "none": TrackerOptions(min_frames=1, min_score=0.0, fragment_min_frames=1, max_elsewhere=0.0),
    "default": TrackerOptions(),
}


def parse_input(text: str) -> tuple[int, str]:
    """`"320:cap320"` -> (imgsz 320, frame variant "cap320"); see `frame_variant_size` for variants."""
    imgsz, sep, variant = text.partition(":")
    if not sep or not imgsz.isdigit():
        raise ValueError(f"pose input must be IMGSZ:FRAMES (e.g. 320:cap320, 320:stored), got {text!r}")
    frame_variant_size(variant, 240, 320)  # validates
    return int(imgsz), variant


def parse_tracker(text: str) -> tuple[str, TrackerOptions]:
    """`"NAME:key=value,..."` (fields changed from the defaults) or a name of DEFAULT_TRACKERS."""
    name, sep, spec = text.partition(":")
    if not sep:
        if name not in DEFAULT_TRACKERS:
            raise ValueError(f"tracker must be NAME:key=value,... or one of {sorted(DEFAULT_TRACKERS)}, got {text!r}")
        return name, DEFAULT_TRACKERS[name]
    return name, TrackerOptions.parse(spec)


def _main_only(poses: PoseBatch, main: np.ndarray) -> PoseBatch:
    """The main actor's pose in slot 0 of each frame (nothing where main == -1)."""
    out = PoseBatch.empty(len(main), 1)
    rows = np.nonzero(main >= 0)[0]
    out.keypoints[rows, 0] = poses.keypoints[rows, main[rows]]
    out.boxes[rows, 0] = poses.boxes[rows, main[rows]]
    return out


def false_actor_frames(main: np.ndarray, poses: PoseBatch, gt_xy: np.ndarray, visible: np.ndarray, size_hw: tuple[int, int]) -> int:
    """Frames whose main actor is not the ground-truth person: nobody visible in the truth, or the centre
    of the truth's joint box outside the main actor's box."""
    h, w = size_hw
    n = 0
    for t in np.nonzero(main >= 0)[0]:
        v = visible[t]
        if not v.any():
            n += 1
            continue
        g = gt_xy[t, v]
        cx, cy = (g.min(0) + g.max(0)) / 2 / np.array([w, h])
        x1, y1, x2, y2 = poses.boxes[t, main[t], :4]
        n += not (x1 <= cx <= x2 and y1 <= cy <= y2)
    return int(n)


def _source_hw(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return int(cc.height), int(cc.width)


def above_threshold(poses: PoseBatch, conf: float) -> PoseBatch:
    """The detections scoring above `conf` (what decoding at that threshold gives: greedy NMS keeps the
    same boxes among the higher-scoring ones, and people are sorted by score, so slots stay in order)."""
    keep = poses.boxes[..., 4] > conf
    return PoseBatch(poses.keypoints * keep[..., None, None], poses.boxes * keep[..., None])


def _cache_path(cache: Path | str, key: list) -> Path:
    import hashlib

    return Path(cache) / (hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24] + ".npz")


def _cache_load(cache: Path | str | None, key: list) -> tuple[PoseBatch, np.ndarray, float] | None:
    if cache is None or not _cache_path(cache, key).is_file():
        return None
    with np.load(_cache_path(cache, key)) as z:
        return PoseBatch(z["keypoints"], z["boxes"]), z["idx"], float(z["cpu_seconds"])


def _cache_save(cache: Path | str | None, key: list, poses: PoseBatch, idx: np.ndarray, cpu_seconds: float) -> None:
    if cache is None:
        return
    Path(cache).mkdir(parents=True, exist_ok=True)
    np.savez(_cache_path(cache, key), keypoints=poses.keypoints, boxes=poses.boxes, idx=idx, cpu_seconds=cpu_seconds)


def sweep(
    real_paths: Sequence[Path | str], synthetic_root: Path | str | None, inputs: Sequence[tuple[int, str]],
    confs: Sequence[float], trackers: dict[str, TrackerOptions], *, negative_paths: Sequence[Path | str] = (),
    max_frames: int | None = None, step: int = 1, max_videos: int | None = None, threads: int = 1, batch: int = 8,
    alpha: float = 0.2, norm: str = "torso", cache: Path | str | None = None,
) -> dict[str, Any]:
    """Coverage, PCK and speed for every (input, conf threshold, tracker); see the module docstring.

    The network runs once per video and input, at the lowest threshold; higher thresholds keep the
    detections above them (`above_threshold`: the same as decoding at that threshold). With `cache` (a
    folder) those poses and their CPU time are kept, so a rerun with other thresholds or trackers only
    tracks.

    One row per setting: `real_coverage` (frames with a main actor, pooled over the real clips' frames),
    `real_clip_coverage` (mean over clips), `real_detection` (frames with anybody), `coverage_<group>`
    per real-clip folder, `negative_actor` (frames with a main actor on `negative_paths`: real footage with
    nobody in it, e.g. crops of the background, so every such frame is a false actor), `synthetic_coverage`, `pck` (PCK@alpha of the best-matching person: the detector),
    `main_pck` (of the main actor: detector + tracker), `synthetic_false_actor` (fraction of main-actor frames
    that are not the ground-truth person, `false_actor_frames`), `fps_per_cpu_second` (the estimator's letterbox,
    network, decoding and NMS on this input, per CPU-second of this process, at the lowest threshold).
    """
    import os

    from .groundtruth import joints_path_for, load_joints
    from .yolo import YoloPoseEstimator, decode_predictions

    real = [(v, v.parent.name) for v in _videos(real_paths)] if real_paths else []
    synth = [(v, "synthetic") for v in synthetic_videos(synthetic_root, max_videos)] if synthetic_root else []
    negative = [(v, "negative") for v in _videos(negative_paths)] if negative_paths else []
    if not real and not synth and not negative:
        raise ValueError("nothing to measure: give real clips, person-free clips and/or a synthetic root")
    inputs = list(dict.fromkeys(inputs))
    confs = sorted({float(c) for c in confs})
    estimators = {imgsz: YoloPoseEstimator(imgsz=imgsz, threads=threads, batch_size=batch, conf_threshold=confs[0])
                  for imgsz in sorted({i for i, _ in inputs})}
    variants = sorted({v for _, v in inputs})
    cpu = {inp: 0.0 for inp in inputs}
    nframes = {inp: 0 for inp in inputs}
    per_video: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for v, group in real + negative + synth:
        decoded: list = []  # (frames by variant, source indices), decoded on first need

        def frames_of(variant: str, v: Path = v, decoded: list = decoded) -> tuple[np.ndarray, np.ndarray]:
            if not decoded:
                decoded.append(read_frame_variants(v, variants, max_frames=max_frames, step=step))
            return decoded[0][0][variant], decoded[0][1]

        for inp in inputs:
            imgsz, variant = inp
            est = estimators[imgsz]
            key = [str(Path(v).resolve()), Path(v).stat().st_size, imgsz, variant, confs[0], est.onnx_sha256,
                   est.iou_threshold, est.keypoint_threshold, est.max_people, max_frames, step, batch]
            cached = _cache_load(cache, key)
            if cached is None:
                f, idx = frames_of(variant)
                parts, c_s = [], 0.0
                for s0 in range(0, len(f), batch):
                    c0 = time.process_time()
                    pred, geom = est.infer_raw(f[s0 : s0 + batch])
                    parts.append(decode_predictions(pred, geom, max_people=est.max_people, conf_threshold=confs[0],
                                                    iou_threshold=est.iou_threshold, keypoint_threshold=est.keypoint_threshold))
                    c_s += time.process_time() - c0
                cached = (PoseBatch.concatenate(parts), idx, c_s)
                _cache_save(cache, key, *cached)
            base, idx, c_s = cached
            if group != "negative":  # speed on the clips measured for quality (negatives are often crops)
                cpu[inp] += c_s
                nframes[inp] += len(idx)
            gt = None
            if group == "synthetic":
                joints, visible = load_joints(joints_path_for(v))
                gt = (joints[idx], visible[idx], _source_hw(v))
            for c in confs:
                poses = above_threshold(base, c)
                detected = int(poses.person_present.any(1).sum())
                pck_det = pck(poses, *gt, alpha=alpha, norm=norm) if gt else None
                for name, tr in trackers.items():
                    main = select_main_actor(poses.keypoints, poses.boxes, tr)
                    row = {"video": str(v), "group": group, "imgsz": imgsz, "frames": variant, "conf": c, "tracker": name,
                           "n": len(idx), "detected": detected, "main": int((main >= 0).sum())}
                    if gt:
                        pm = pck(_main_only(poses, main), *gt, alpha=alpha, norm=norm)
                        row.update(joints=pck_det["joints"], pck_hits=round(pck_det["pck"] * pck_det["joints"]),
                                   main_pck_hits=round(pm["pck"] * pm["joints"]), main_false=false_actor_frames(main, poses, *gt))
                    per_video.append(row)
        log.info("%s: %d frames (%.0f s so far)", v.name, len(idx), time.perf_counter() - t_start)
    rows = []
    for inp in inputs:
        for c in confs:
            for name in trackers:
                sel = [r for r in per_video if (r["imgsz"], r["frames"], r["conf"], r["tracker"]) == (*inp, c, name)]
                rows.append(_summarise(sel, inp, c, name, trackers[name], cpu[inp], nframes[inp]))
    return {
        "alpha": alpha, "norm": norm, "step": step, "max_frames": max_frames, "threads": threads,
        "real_videos": len(real), "negative_videos": len(negative), "synthetic_videos": len(synth), "rows": rows, "per_video": per_video,
        "loadavg_1min": os.getloadavg()[0], "seconds": time.perf_counter() - t_start,
    }


def _summarise(sel: list[dict], inp: tuple[int, str], conf: float, name: str, tracker: TrackerOptions,
               cpu: float, frames: int) -> dict[str, Any]:
    real = [r for r in sel if r["group"] not in ("synthetic", "negative")]
    synth = [r for r in sel if r["group"] == "synthetic"]
    negative = [r for r in sel if r["group"] == "negative"]
    out: dict[str, Any] = {"imgsz": inp[0], "frames": inp[1], "conf": conf, "tracker": name,
                           "tracker_options": tracker.to_json(),
                           "fps_per_cpu_second": frames / cpu if cpu > 0 else float("nan")}
    if real:
        n = sum(r["n"] for r in real)
        out["real_coverage"] = sum(r["main"] for r in real) / n
        out["real_detection"] = sum(r["detected"] for r in real) / n
        out["real_clip_coverage"] = float(np.mean([r["main"] / r["n"] for r in real]))
        for g in sorted({r["group"] for r in real}):
            rg = [r for r in real if r["group"] == g]
            out[f"coverage_{g}"] = sum(r["main"] for r in rg) / sum(r["n"] for r in rg)
    if negative:
        out["negative_actor"] = sum(r["main"] for r in negative) / sum(r["n"] for r in negative)
        out["negative_detection"] = sum(r["detected"] for r in negative) / sum(r["n"] for r in negative)
    if synth:
        joints = sum(r["joints"] for r in synth)
        out["synthetic_coverage"] = sum(r["main"] for r in synth) / sum(r["n"] for r in synth)
        out["pck"] = sum(r["pck_hits"] for r in synth) / joints if joints else float("nan")
        out["main_pck"] = sum(r["main_pck_hits"] for r in synth) / joints if joints else float("nan")
        out["synthetic_false_actor"] = sum(r["main_false"] for r in synth) / max(1, sum(r["main"] for r in synth))
    return out


TABLE_COLUMNS = (
    ("imgsz", "imgsz"), ("frames", "frames"), ("conf", "conf"), ("tracker", "tracker"),
    ("real_coverage", "coverage real (pooled)"), ("real_clip_coverage", "coverage real (clip mean)"),
    ("coverage_hmdb51", "hmdb51"), ("coverage_multi-person", "multi-person"), ("coverage_asl", "asl"),
    ("coverage_kth", "kth"), ("coverage_ntu", "ntu"), ("coverage_ps7", "ps7"),
    ("negative_actor", "false actor, person-free clips"),
    ("synthetic_coverage", "coverage synthetic"), ("pck", "PCK@0.2 detector"), ("main_pck", "PCK@0.2 main actor"),
    ("synthetic_false_actor", "false actor synthetic"),
    ("fps_per_cpu_second", "frames/s per core"),
)


BRIEF_COLUMNS = ("imgsz", "frames", "conf", "tracker", "real_coverage", "coverage_hmdb51", "coverage_multi-person",
                 "negative_actor", "synthetic_coverage", "main_pck", "fps_per_cpu_second")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Sweep rows as a markdown table: `columns` (keys of TABLE_COLUMNS; default all), those no row has left out."""
    cols = [(k, h) for k, h in TABLE_COLUMNS if any(k in r for r in rows) and (columns is None or k in columns)]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k, "")
            if k == "fps_per_cpu_second" and isinstance(v, float):
                cells.append(f"{v:.0f}")
            elif isinstance(v, float) and k != "conf":
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# person-free footage: crops of real clips' backgrounds (`crop-negatives`), for `sweep --negative`
NEGATIVE_CROPS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    # name: (clip under the real-clips folder, (y0, y1, x0, x1) as fractions of the frame)
    "rockface": ("hmdb51/(HQ)_Rock_Climbing_-_Free_Solo_Speed_Climb_-_Dan_Osman_climb_f_cm_np1_le_med_2.avi", (0, 1, 0, 0.3)),
    "ballfield_sky": ("hmdb51/BaseballHitinSlowMotion_swing_baseball_f_nm_np1_fr_bad_0.avi", (0, 0.35, 0, 1)),
    "ps7_wall": ("ps7/PS7A1P1T1.avi", (0, 0.2, 0, 1)),
    "ntu_left": ("ntu/S001C001P001R001A001_rgb.avi", (0, 1, 0, 0.25)),
}


def write_negative_crops(real_root: Path | str, out: Path | str) -> list[Path]:
    """Write NEGATIVE_CROPS (regions of real clips that nobody enters; checked by eye) as MPEG-4 AVIs."""
    import av

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (rel, (y0, y1, x0, x1)) in NEGATIVE_CROPS.items():
        frames, _ = read_frames(Path(real_root) / rel)
        h, w = frames.shape[1:3]
        crop = frames[:, int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
        ch, cw = crop.shape[1] // 2 * 2, crop.shape[2] // 2 * 2
        path = out / f"{name}.avi"
        with av.open(str(path), "w") as o:
            s = o.add_stream("mpeg4", rate=30)
            s.width, s.height, s.pix_fmt, s.bit_rate = cw, ch, "yuv420p", 4_000_000
            for f in crop[:, :ch, :cw]:
                for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    o.mux(pkt)
            for pkt in s.encode():
                o.mux(pkt)
        written.append(path)
    return written


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


@cli.command("sweep")
@click.option("--real", "real_paths", multiple=True, type=click.Path(exists=True), help="real clips (files or folders); repeatable")
@click.option("--negative", "negative_paths", multiple=True, type=click.Path(exists=True),
              help="real clips with nobody in them (files or folders): any main actor there is false; repeatable")
@click.option("--synthetic", "synthetic_root", type=click.Path(exists=True, file_okay=False), help="a `csvr synth` dataset with joints")
@click.option("--input", "inputs", multiple=True, default=("320:cap320",), show_default=True,
              help="IMGSZ:FRAMES; FRAMES = cap<N> (the source, long side capped to N, as the pipeline's pose_cap=N), "
                   "stored (128x171), source or <H>x<W>; repeatable")
@click.option("--conf", "confs", multiple=True, type=float, default=(0.25,), show_default=True,
              help="detection score threshold; repeatable")
@click.option("--tracker", "tracker_specs", multiple=True, default=("none", "default"), show_default=True,
              help="NAME:key=value,... (TrackerOptions fields changed from the defaults) or none/default; repeatable")
@click.option("--max-videos", type=int, default=None, help="first N synthetic videos only")
@click.option("--max-frames", type=int, default=None, help="frames per video (default: all)")
@click.option("--step", default=1, show_default=True, help="use every k-th frame")
@click.option("--threads", default=1, show_default=True, help="onnxruntime threads")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="keep each video's poses (and their CPU time) here; a rerun then only re-tracks")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the rows and per-video counts here")
def sweep_cmd(real_paths, negative_paths, synthetic_root, inputs, confs, tracker_specs, max_videos, max_frames, step, threads, cache, json_out):
    """Coverage (real), PCK (synthetic) and frames/s per core for every input x threshold x tracker."""
    try:
        trackers = dict(parse_tracker(t) for t in tracker_specs)
        parsed = [parse_input(i) for i in inputs]
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    res = sweep(real_paths, synthetic_root, parsed, confs, trackers, negative_paths=negative_paths,
                max_frames=max_frames, step=step, max_videos=max_videos, threads=threads, cache=cache)
    click.echo(markdown_table(res["rows"]))
    click.echo(f"{res['real_videos']} real + {res['negative_videos']} person-free + {res['synthetic_videos']} synthetic videos, {res['seconds']:.0f} s, "
               f"load average {res['loadavg_1min']:.2f}")
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2))
        click.echo(f"wrote {json_out}")


@cli.command("table")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--tracker", "tracker_names", multiple=True, help="only rows of these trackers; repeatable")
@click.option("--input", "inputs", multiple=True, help="only rows of these IMGSZ:FRAMES inputs; repeatable")
@click.option("--conf", "confs", multiple=True, type=float, help="only rows of these thresholds; repeatable")
@click.option("--brief", is_flag=True, help="fewer columns: pooled real coverage, hmdb51, multi-person, person-free, "
                                          "synthetic coverage, main-actor PCK, speed")
def table_cmd(files, tracker_names, inputs, confs, brief):
    """The rows of one or more `sweep --json` files as one markdown table."""
    rows = [r for f in files for r in json.loads(Path(f).read_text())["rows"]]
    if tracker_names:
        rows = [r for r in rows if r["tracker"] in tracker_names]
    if inputs:
        wanted = {parse_input(i) for i in inputs}
        rows = [r for r in rows if (r["imgsz"], r["frames"]) in wanted]
    if confs:
        rows = [r for r in rows if any(abs(r["conf"] - c) < 1e-9 for c in confs)]
    click.echo(markdown_table(rows, BRIEF_COLUMNS if brief else None))


@cli.command("crop-negatives")
@click.argument("real_root", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
def crop_negatives_cmd(real_root, out):
    """Write person-free crops of the real clips under REAL_ROOT (backgrounds nobody enters) to OUT."""
    for p in write_negative_crops(real_root, out):
        click.echo(f"wrote {p}")


if __name__ == "__main__":
    cli()
