"""Generate the synthetic action-video dataset in the UCF101 layout (see docs/contracts.md section 2).

Each class is a (motion program, scene family) pair, in three groups like the paper's Figure 4:
"motion" classes share the indoor scene family and differ by movement, "context" classes share the
walking movement and differ by scene, "both" classes reuse a motion-class movement in a context-class
scene, so telling them apart needs motion and context together. Videos of one group (gXX) share the
actor and the scene instance, as in UCF101, and train/test lists split by group.

Everything random comes from `numpy.random.SeedSequence([seed, crc32(class), group, clip])`, so a video
does not depend on which other classes/videos are generated nor on the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from csvr.data_manifests.synthetic import render, skeleton
from csvr.data_manifests.synthetic.writer import save_npz_deterministic, write_video

log = logging.getLogger(__name__)

FORMAT = "csvr-synthetic/1"


@dataclass(frozen=True)
class ClassSpec:
    """One class: its name (UCF-style CamelCase), motion program, scene family and Figure-4 group."""

    name: str
    motion: str
    scene: str
    group: str   # "motion" | "context" | "both"


# Prefix order: `num_classes=N` takes the first N, interleaving the groups so small datasets mix them.
CLASS_POOL: tuple[ClassSpec, ...] = (
    ClassSpec("WaveOneHand", "wave_one", "room", "motion"),
    ClassSpec("BeachWalk", "walk", "beach", "context"),
    ClassSpec("FieldKick", "kick", "field", "both"),
    ClassSpec("Squat", "squat", "room", "motion"),
    ClassSpec("StreetWalk", "walk", "street", "context"),
    ClassSpec("BeachJump", "jump", "beach", "both"),
    ClassSpec("Clap", "clap", "room", "motion"),
    ClassSpec("FieldWalk", "walk", "field", "context"),
    ClassSpec("StreetWave", "wave_one", "street", "both"),
    ClassSpec("Jump", "jump", "room", "motion"),
    ClassSpec("WaveBothHands", "wave_both", "room", "motion"),
    ClassSpec("Kick", "kick", "room", "motion"),
    ClassSpec("Punch", "punch", "room", "motion"),
    ClassSpec("ArmCircles", "arm_circles", "room", "motion"),
    ClassSpec("RoomWalk", "walk", "room", "both"),
)


@dataclass(frozen=True)
class Options:
    """Generator options recorded in synthetic.json."""

    videos_per_class: int = 4
    seed: int = 0
    num_classes: int = 12
    gop: int = 12
    single_iframe: bool = False
    clips_per_group: int = 2
    test_fraction: float = 0.3
    extra_test_groups: int = 0     # more test groups per class after the usual ones: the train videos stay
                                   # exactly those of the same call without them (a bigger test split of one set)
    height: int = 240
    width: int = 320
    fps: int = 25
    min_seconds: float = 3.0
    max_seconds: float = 6.0
    codec: str = "mpeg4"
    bit_rate: int = 900_000


@dataclass(frozen=True)
class VideoJob:
    cls: ClassSpec
    label: int          # 0-based index into the sorted class list
    group: int
    clip: int
    split: str          # "train" | "test"

    @property
    def stem(self) -> str:
        return f"v_{self.cls.name}_g{self.group:02d}_c{self.clip:02d}"


def select_classes(num_classes: int) -> list[ClassSpec]:
    """The first `num_classes` of the pool, sorted by name (UCF101's classInd order)."""
    if not 1 <= num_classes <= len(CLASS_POOL):
        raise ValueError(f"num_classes must be between 1 and {len(CLASS_POOL)} (got {num_classes})")
    return sorted(CLASS_POOL[:num_classes], key=lambda c: c.name)


def plan_videos(opts: Options) -> list[VideoJob]:
    """Every video to write, with its group/clip numbers and split (test = the first groups)."""
    if opts.videos_per_class < 2:
        raise ValueError(f"videos_per_class must be >= 2 so that train and test groups both exist "
                         f"(got {opts.videos_per_class})")
    if opts.clips_per_group < 1:
        raise ValueError(f"clips_per_group must be >= 1 (got {opts.clips_per_group})")
    cpg = min(opts.clips_per_group, math.ceil(opts.videos_per_class / 2))
    n_groups = math.ceil(opts.videos_per_class / cpg)
    n_test = min(n_groups - 1, max(1, round(n_groups * opts.test_fraction)))
    jobs = []
    for label, cls in enumerate(select_classes(opts.num_classes)):
        for i in range(opts.videos_per_class):
            g, c = i // cpg + 1, i % cpg + 1
            jobs.append(VideoJob(cls, label, g, c, "test" if g <= n_test else "train"))
        for g in range(n_groups + 1, n_groups + opts.extra_test_groups + 1):
            jobs += [VideoJob(cls, label, g, c, "test") for c in range(1, cpg + 1)]
    return jobs


def _rng(opts: Options, job: VideoJob, *extra: int) -> np.random.Generator:
    key = [opts.seed, zlib.crc32(job.cls.name.encode()), job.group, *extra]
    return np.random.default_rng(np.random.SeedSequence(key))


@dataclass
class Layout:
    """Per-clip placement and imaging parameters."""

    scale: float            # standing height in pixels
    origin: np.ndarray      # ground point under the pelvis at t = 0, canvas pixels
    dx_gain: float          # multiplies the program's translation to keep a walker in frame
    speed: float
    mirror: bool
    gain: np.ndarray        # per-channel light gain (BGR)
    flicker: float
    noise: float
    cam_amp: np.ndarray     # camera sway amplitude (x, y) pixels
    cam_freq: np.ndarray
    cam_phase: np.ndarray
    zoom: float
    light: np.ndarray       # unit vector toward the key light (for limb highlights)


MARGIN = 14   # canvas border for camera motion


def render_clip(opts: Options, job: VideoJob) -> tuple[Iterator[np.ndarray], np.ndarray, np.ndarray]:
    """Frames (a lazy BGR iterator), joints (T, 17, 2) float32 in frame pixels and visibility (T, 17)."""
    H, W = opts.height, opts.width
    grng = _rng(opts, job)                       # shared by the clips of a group: scene + actor
    crng = _rng(opts, job, job.clip)             # this clip
    bg, horizon = render.background(job.cls.scene, grng, H + 2 * MARGIN, W + 2 * MARGIN)
    app = render.Appearance.random(grng)

    T = int(round(crng.uniform(opts.min_seconds, opts.max_seconds) * opts.fps))
    t = np.arange(T) / opts.fps
    mirror = bool(crng.random() < 0.5)
    speed = float(crng.uniform(0.8, 1.25))
    motion = skeleton.PROGRAMS[job.cls.motion](t, crng, speed, mirror)
    pose = skeleton.forward_kinematics(motion)

    # Placement: feet below the horizon, the whole (jumping) figure inside the frame.
    top_units = -float(pose.joints[:, :, 1].min()) + skeleton.HEAD_R
    scale = float(crng.uniform(0.42, 0.66) * H)
    ground_lo = max(horizon + 0.08 * H, MARGIN + 0.04 * H + scale * top_units)
    ground_hi = MARGIN + H * 0.97
    if ground_lo > ground_hi:
        scale = (ground_hi - MARGIN - 0.04 * H) / top_units
        ground_lo = ground_hi
    gy = float(crng.uniform(ground_lo, ground_hi))
    # A walker's translation is scaled down (a slower, treadmill-like walk) when it would leave the frame.
    dx = motion.dx
    room_x = W * 0.9 - 0.5 * scale
    travel = float(np.ptp(dx)) * scale
    dx_gain = room_x / travel if travel > room_x else 1.0
    lo = MARGIN + W * 0.05 + 0.25 * scale - float(min(0.0, dx.min() * dx_gain)) * scale
    hi = MARGIN + W * 0.95 - 0.25 * scale - float(max(0.0, dx.max() * dx_gain)) * scale
    gx = float(crng.uniform(lo, hi)) if hi > lo else MARGIN + W / 2 - float(dx.mean() * dx_gain) * scale

    tint = crng.uniform(-0.08, 0.08, 3)
    lay = Layout(
        scale=scale, origin=np.array([gx, gy]), dx_gain=dx_gain, speed=speed, mirror=mirror,
        gain=float(crng.uniform(0.75, 1.2)) * (1 + tint - tint.mean()), flicker=float(crng.uniform(0, 0.025)),
        noise=float(crng.uniform(1.5, 5.0)), cam_amp=crng.uniform(0, 4.0, 2), cam_freq=crng.uniform(0.1, 0.5, 2),
        cam_phase=crng.uniform(0, 2 * np.pi, 2), zoom=float(crng.uniform(1.0, 1.04)),
        light=np.array([crng.uniform(-1, 1), -1.0]),
    )
    lay.light = lay.light / np.linalg.norm(lay.light)

    # Body units -> canvas pixels -> frame pixels (camera offset and zoom per frame).
    def to_canvas(p: np.ndarray) -> np.ndarray:
        q = p.copy()
        q[..., 0] = q[..., 0] + (dx * (dx_gain - 1.0)).reshape((-1,) + (1,) * (q.ndim - 2))
        return lay.origin + q * scale

    cam = lay.cam_amp * np.sin(2 * np.pi * lay.cam_freq * t[:, None] + lay.cam_phase)   # (T, 2)
    cam += np.cumsum(crng.normal(0, 0.15, (T, 2)), axis=0).clip(-3, 3)                 # hand-held jitter
    offset = MARGIN + cam                                                               # canvas px at frame (0,0)
    z = lay.zoom
    centre = np.array([W / 2, H / 2])

    def to_frame(p: np.ndarray) -> np.ndarray:   # p (T, ..., 2) canvas px
        sh = (-1,) + (1,) * (p.ndim - 2) + (2,)
        return (p - offset.reshape(sh) - centre) * z + centre

    joints = to_frame(to_canvas(pose.joints))
    neck = to_frame(to_canvas(pose.neck[:, None]))[:, 0]
    pelvis = to_frame(to_canvas(pose.pelvis[:, None]))[:, 0]
    head = to_frame(to_canvas(pose.head[:, None]))[:, 0]
    toes = to_frame(to_canvas(pose.toes))
    ground = to_frame(to_canvas(np.stack([pose.pelvis[:, 0], np.zeros(T)], 1)[:, None]))[:, 0]
    lift = motion.lift
    inside = (joints[..., 0] >= 0) & (joints[..., 0] <= W - 1) & (joints[..., 1] >= 0) & (joints[..., 1] <= H - 1)
    visible = pose.visible & inside
    fig_scale = scale * z

    noise_bank = [crng.normal(0, lay.noise, (H + 8, W + 8, 3)).astype(np.int16) for _ in range(3)]
    noise_off = crng.integers(0, 8, (T, 2))
    flick = 1 + lay.flicker * np.sin(2 * np.pi * crng.uniform(0.5, 2.0) * t + crng.uniform(0, 6))

    def frames() -> Iterator[np.ndarray]:
        for i in range(T):
            m = np.array([[z, 0, (centre[0] - (offset[i, 0] + centre[0]) * z)],
                          [0, z, (centre[1] - (offset[i, 1] + centre[1]) * z)]], dtype=np.float64)
            img = cv2.warpAffine(bg, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            render.draw_shadow(img, ground[i], 0.17 * fig_scale / (1 + 3 * lift[i]),
                               0.035 * fig_scale / (1 + 3 * lift[i]), 0.45 / (1 + 4 * lift[i]))
            render.draw_figure(img, joints[i], neck[i], pelvis[i], head[i], toes[i], fig_scale, app,
                               pose.view, pose.facing, lay.light)
            g = lay.gain * flick[i]
            img = cv2.multiply(img, (float(g[0]), float(g[1]), float(g[2]), 0.0))
            oy, ox = noise_off[i]
            nz = noise_bank[i % 3][oy:oy + H, ox:ox + W]
            yield cv2.add(img, nz, dtype=cv2.CV_8U)

    return frames(), joints.astype(np.float32), visible


def _write_one(args: tuple[Options, VideoJob, str]) -> tuple[str, int]:
    opts, job, out = args
    cv2.setNumThreads(1)
    root = Path(out)
    frames, joints, visible = render_clip(opts, job)
    vpath = root / "UCF-101" / job.cls.name / f"{job.stem}.avi"
    n = write_video(vpath, frames, fps=opts.fps, gop=None if opts.single_iframe else opts.gop,
                    codec=opts.codec, bit_rate=opts.bit_rate)
    if n != joints.shape[0]:
        raise RuntimeError(f"{vpath}: wrote {n} frames but have {joints.shape[0]} joint rows")
    save_npz_deterministic(root / "joints" / job.cls.name / f"{job.stem}.npz", joints=joints, visible=visible)
    return job.stem, n


def generate(out: Path, *, videos_per_class: int = 4, seed: int = 0, num_classes: int = 12, gop: int = 12,
             single_iframe: bool = False, workers: int = 1, clips_per_group: int = 2,
             test_fraction: float = 0.3, extra_test_groups: int = 0, size: tuple[int, int] = (240, 320),
             fps: int = 25,
             seconds: tuple[float, float] = (3.0, 6.0), codec: str = "mpeg4",
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the synthetic dataset to `out` (UCF101 layout + joints + synthetic.json); return `out`.

    Deterministic by `seed` (joints, lists and json byte-identical; videos too with the single-threaded
    encoder). `workers` > 1 renders videos in that many processes. `progress(done, total)` is called
    after each video.
    """
    if gop < 1:
        raise ValueError(f"gop must be >= 1 (got {gop})")
    if not (0 < seconds[0] <= seconds[1]):
        raise ValueError(f"seconds must be an increasing positive range (got {seconds})")
    if size[0] < 32 or size[1] < 32 or size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must be even and >= 32 pixels (got {size})")
    opts = Options(videos_per_class=videos_per_class, seed=seed, num_classes=num_classes, gop=gop,
                   single_iframe=single_iframe, clips_per_group=clips_per_group, test_fraction=test_fraction,
                   extra_test_groups=extra_test_groups, height=size[0], width=size[1], fps=fps, min_seconds=seconds[0], max_seconds=seconds[1],
                   codec=codec)
    jobs = plan_videos(opts)
    classes = select_classes(num_classes)
    out = Path(out)
    for cls in classes:
        (out / "UCF-101" / cls.name).mkdir(parents=True, exist_ok=True)
        (out / "joints" / cls.name).mkdir(parents=True, exist_ok=True)
    lists = out / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)

    frames: dict[str, int] = {}
    args = [(opts, j, str(out)) for j in jobs]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
            for k, (stem, n) in enumerate(pool.map(_write_one, args, chunksize=1), 1):
                frames[stem] = n
                if progress:
                    progress(k, len(jobs))
    else:
        for k, a in enumerate(args, 1):
            stem, n = _write_one(a)
            frames[stem] = n
            if progress:
                progress(k, len(jobs))

    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c.name}\n" for i, c in enumerate(classes)))
    (lists / "trainlist01.txt").write_text("".join(
        f"{j.cls.name}/{j.stem}.avi {j.label + 1}\n" for j in jobs if j.split == "train"))
    (lists / "testlist01.txt").write_text("".join(
        f"{j.cls.name}/{j.stem}.avi\n" for j in jobs if j.split == "test"))
    meta = {
        "format": FORMAT,
        "classes": [c.name for c in classes],
        "groups": {c.name: c.group for c in classes},
        "motions": {c.name: c.motion for c in classes},
        "scenes": {c.name: c.scene for c in classes},
        "seed": seed,
        "options": asdict(opts),
        "counts": {"videos": len(jobs), "train": sum(j.split == "train" for j in jobs),
                   "test": sum(j.split == "test" for j in jobs), "per_class": videos_per_class},
        "videos": [{"path": f"UCF-101/{j.cls.name}/{j.stem}.avi", "label": j.label, "label_name": j.cls.name,
                    "group": j.group, "clip": j.clip, "split": j.split, "frames": frames[j.stem]} for j in jobs],
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n")
    log.info("wrote %d synthetic videos (%d classes) to %s", len(jobs), len(classes), out)
    return out
