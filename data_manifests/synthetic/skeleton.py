"""COCO-17 skeleton, body proportions and the action motion programs of the synthetic dataset.

A motion program maps time (seconds) and per-video parameters to joint angles; `forward_kinematics`
turns the angles into 2D joint positions in body units (height 1, y down, feet on the ground at y = 0).
Everything is vectorised over frames so a whole video's poses cost a few numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NOSE, LEYE, REYE, LEAR, REAR, LSHO, RSHO, LELB, RELB, LWRI, RWRI, LHIP, RHIP, LKNE, RKNE, LANK, RANK = range(17)

# Body proportions in units of standing height.
TORSO = 0.30        # pelvis centre -> neck base
NECK = 0.045
HEAD_R = 0.068
SHOULDER_W = 0.105  # half width
HIP_W = 0.065
UPPER_ARM = 0.165
FOREARM = 0.150
THIGH = 0.235
SHIN = 0.225
FOOT_H = 0.03       # ankle above the sole
FOOT_L = 0.075


@dataclass
class Motion:
    """Angles (radians, arrays of shape (T,)) describing one video's movement.

    Limb angles are absolute, measured from "straight down". In the front view a positive angle turns
    the limb outward (away from the body's midline); in the side view it turns the limb forward.
    Arm angles are relative to the torso axis, leg angles to the world vertical.
    """

    view: str                       # "front" | "side"
    facing: int                     # side view: +1 walks/faces to image right, -1 to the left
    yaw: float                      # front view: head/shoulder turn, radians
    la1: np.ndarray; la2: np.ndarray; ra1: np.ndarray; ra2: np.ndarray   # noqa: E702
    ll1: np.ndarray; ll2: np.ndarray; rl1: np.ndarray; rl2: np.ndarray   # noqa: E702
    lean: np.ndarray                # torso tilt (front: sideways, side: forward)
    head: np.ndarray                # extra head tilt
    lift: np.ndarray                # pelvis height above ground contact (jumps), body units
    dx: np.ndarray                  # horizontal translation, body units


@dataclass
class Pose:
    """Joint positions for T frames in body units plus the extra points the renderer needs."""

    joints: np.ndarray      # (T, 17, 2)
    neck: np.ndarray        # (T, 2)
    pelvis: np.ndarray      # (T, 2)
    head: np.ndarray        # (T, 2) head centre
    toes: np.ndarray        # (T, 2, 2) left, right toe tips
    view: str
    facing: int
    visible: np.ndarray     # (T, 17) bool: not self-occluded


def _seg(angle: np.ndarray, down: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Unit vectors (T, 2) at `angle` from `down` toward `out`."""
    return down * np.cos(angle)[:, None] + out * np.sin(angle)[:, None]


def forward_kinematics(m: Motion) -> Pose:
    """Joint positions (body units, feet on y = 0) of a motion, vectorised over frames."""
    T = m.lean.shape[0]
    side = m.view == "side"
    d = float(m.facing) if side else 1.0
    up = np.stack([d * np.sin(m.lean), -np.cos(m.lean)], axis=1)          # pelvis -> neck
    lat = np.stack([d * np.cos(m.lean), d * np.sin(m.lean)], axis=1)       # +x-ish across the body
    down_t = -up
    wf = 0.12 if side else float(np.cos(m.yaw))                             # projected body width
    world_down = np.tile(np.array([0.0, 1.0]), (T, 1))
    world_x = np.tile(np.array([1.0, 0.0]), (T, 1))

    # Legs first (relative to a pelvis at the origin) to find the ground contact.
    hips = {}
    ankles = {}
    knees = {}
    for name, s, a1, a2 in (("l", 1.0, m.ll1, m.ll2), ("r", -1.0, m.rl1, m.rl2)):
        out = world_x * (d if side else s)
        hip = lat * (s * HIP_W * wf)
        knee = hip + THIGH * _seg(a1, world_down, out)
        ankle = knee + SHIN * _seg(a2, world_down, out)
        hips[name], knees[name], ankles[name] = hip, knee, ankle
    lowest = np.maximum(ankles["l"][:, 1], ankles["r"][:, 1]) + FOOT_H
    pelvis = np.stack([m.dx, -lowest - m.lift], axis=1)

    neck = pelvis + TORSO * up
    sho_base = pelvis + (TORSO - 0.025) * up
    joints = np.zeros((T, 17, 2))
    for s, (hi, sh, el, wr, kn, an), a1, a2, leg in (
        (1.0, (LHIP, LSHO, LELB, LWRI, LKNE, LANK), m.la1, m.la2, "l"),
        (-1.0, (RHIP, RSHO, RELB, RWRI, RKNE, RANK), m.ra1, m.ra2, "r"),
    ):
        out = lat * (1.0 if side else s)
        sho = sho_base + lat * (s * SHOULDER_W * wf)
        elb = sho + UPPER_ARM * _seg(a1, down_t, out)
        wri = elb + FOREARM * _seg(a2, down_t, out)
        joints[:, sh], joints[:, el], joints[:, wr] = sho, elb, wri
        joints[:, hi] = pelvis + hips[leg]
        joints[:, kn] = pelvis + knees[leg]
        joints[:, an] = pelvis + ankles[leg]

    # Head: a sphere above the neck; face points rotated by yaw (front) or facing (side).
    tilt = m.lean + m.head
    hup = np.stack([d * np.sin(tilt), -np.cos(tilt)], axis=1)
    hlat = np.stack([d * np.cos(tilt), d * np.sin(tilt)], axis=1)
    head = neck + (NECK + HEAD_R) * hup
    r = HEAD_R
    # (lateral toward the person's left, down, forward) in head radii
    face = {NOSE: (0.0, 0.25, 1.0), LEYE: (0.36, -0.08, 0.88), REYE: (-0.36, -0.08, 0.88),
            LEAR: (0.97, 0.05, 0.0), REAR: (-0.97, 0.05, 0.0)}
    for k, (x, y, z) in face.items():
        px = (z * 1.0 + x * 0.12) if side else (x * np.cos(m.yaw) + z * np.sin(m.yaw))
        joints[:, k] = head + hlat * (px * r) - hup * (y * r)

    toes = np.zeros((T, 2, 2))
    for i, (an, s) in enumerate(((LANK, 1.0), (RANK, -1.0))):
        if side:
            toes[:, i] = joints[:, an] + np.array([d * FOOT_L, FOOT_H * 0.8])
        else:
            toes[:, i] = joints[:, an] + np.array([s * FOOT_L * 0.35, FOOT_H * 0.9])

    visible = np.ones((T, 17), dtype=bool)
    if side:
        far = (LEYE, LEAR) if d > 0 else (REYE, REAR)   # facing +x shows the right side
        visible[:, list(far)] = False
    elif abs(m.yaw) > 0.35:
        visible[:, LEAR if m.yaw < 0 else REAR] = False
    return Pose(joints, neck, pelvis, head, toes, m.view, int(d), visible)


# --------------------------------------------------------------------------------------------
# Motion programs. Each takes time t (T,) in seconds, a rng and a speed factor and returns Motion.

def _idle(t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small breathing / weight-shift movements shared by every action (so no pose is frozen)."""
    ph = rng.uniform(0, 2 * np.pi, 6)
    f = rng.uniform(0.15, 0.4, 3)
    sway = 0.025 * np.sin(2 * np.pi * f[0] * t + ph[0])
    return {
        "la1": np.deg2rad(9 + 3 * np.sin(2 * np.pi * f[1] * t + ph[1])),
        "ra1": np.deg2rad(9 + 3 * np.sin(2 * np.pi * f[1] * t + ph[2])),
        "la2": np.deg2rad(4 + 2 * np.sin(2 * np.pi * f[2] * t + ph[3])),
        "ra2": np.deg2rad(4 + 2 * np.sin(2 * np.pi * f[2] * t + ph[4])),
        "ll1": np.full_like(t, np.deg2rad(4)) + sway, "ll2": np.full_like(t, np.deg2rad(3)) + sway,
        "rl1": np.full_like(t, np.deg2rad(4)) - sway, "rl2": np.full_like(t, np.deg2rad(3)) - sway,
        "lean": 0.6 * sway, "head": 0.04 * np.sin(2 * np.pi * f[2] * t + ph[5]),
        "lift": np.zeros_like(t), "dx": np.zeros_like(t),
    }


def _front(t: np.ndarray, rng: np.random.Generator, a: dict[str, np.ndarray], mirror: bool) -> Motion:
    if mirror:  # the other arm/leg does the one-sided part of the action
        for x, y in (("la1", "ra1"), ("la2", "ra2"), ("ll1", "rl1"), ("ll2", "rl2")):
            a[x], a[y] = a[y], a[x]
        a["lean"] = -a["lean"]
    return Motion(view="front", facing=1, yaw=float(rng.uniform(-0.3, 0.3)), **a)


def wave_one(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(1.6, 2.4) * speed
    ph = rng.uniform(0, 2 * np.pi)
    a["ra1"] = np.deg2rad(rng.uniform(105, 130) + 6 * np.sin(w * t + ph))
    a["ra2"] = np.deg2rad(165 + rng.uniform(22, 32) * np.sin(w * t + ph))
    return _front(t, rng, a, mirror)


def wave_both(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(1.3, 2.0) * speed
    ph = rng.uniform(0, 2 * np.pi)
    base = rng.uniform(125, 150)
    for side, sgn in (("l", 1.0), ("r", -1.0 if rng.random() < 0.5 else 1.0)):
        osc = np.sin(w * t + ph) * sgn
        a[side + "a1"] = np.deg2rad(base + 10 * osc)
        a[side + "a2"] = np.deg2rad(175 + 30 * osc)
    return _front(t, rng, a, mirror)


def clap(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(1.5, 2.3) * speed
    c = 0.5 - 0.5 * np.cos(w * t + rng.uniform(0, 2 * np.pi))   # 0 = hands together, 1 = apart
    gap = 0.06 + c * rng.uniform(0.22, 0.32)    # wrist distance; the hands (drawn past the wrists) touch at 0.06
    a1 = np.deg2rad(rng.uniform(8, 16) + 12 * c)
    # forearm angle that puts each wrist gap/2 from the midline (2-link inverse kinematics in x)
    x = np.clip((gap / 2 - 0.97 * SHOULDER_W - UPPER_ARM * np.sin(a1)) / FOREARM, -1.0, 1.0)
    a2 = -np.pi - np.arcsin(x)
    for s in ("l", "r"):
        a[s + "a1"], a[s + "a2"] = a1, a2
    return _front(t, rng, a, mirror)


def squat(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(0.45, 0.7) * speed
    depth = rng.uniform(0.8, 1.0)
    s = depth * (0.5 - 0.5 * np.cos(w * t + rng.uniform(0, 2 * np.pi))) ** 1.3
    for leg in ("l", "r"):
        a[leg + "l1"] = np.deg2rad(6 + 62 * s)
        a[leg + "l2"] = np.deg2rad(3 - 48 * s)
    for arm in ("l", "r"):   # arms come up in front of the chest as the body goes down
        a[arm + "a1"] = np.deg2rad(10 + 55 * s)
        a[arm + "a2"] = np.deg2rad(8 - 95 * s)
    a["head"] = a["head"] * 0.3
    return _front(t, rng, a, mirror)


def jump(t, rng, speed, mirror):
    a = _idle(t, rng)
    period = rng.uniform(0.75, 1.0) / speed
    p = ((t + rng.uniform(0, period)) % period) / period          # 0..1 within a jump cycle
    crouch = np.where(p < 0.35, np.sin(np.pi * p / 0.35), 0.0)       # bend before take-off
    air = np.where(p >= 0.35, np.sin(np.pi * (p - 0.35) / 0.65), 0.0)
    height = rng.uniform(0.13, 0.22)
    for leg in ("l", "r"):
        a[leg + "l1"] = np.deg2rad(5 + 40 * crouch + 6 * air)
        a[leg + "l2"] = np.deg2rad(3 - 30 * crouch + 4 * air)
    arms = rng.uniform(130, 165)
    for arm in ("l", "r"):
        a[arm + "a1"] = np.deg2rad(12 - 10 * crouch + arms * air)
        a[arm + "a2"] = np.deg2rad(10 - 8 * crouch + (arms + 10) * air)
    a["lift"] = height * air
    return _front(t, rng, a, mirror)


def kick(t, rng, speed, mirror):
    a = _idle(t, rng)
    period = rng.uniform(1.1, 1.5) / speed
    p = ((t + rng.uniform(0, period)) % period) / period
    k = np.where(p < 0.55, np.sin(np.pi * p / 0.55), 0.0) ** 1.5    # leg up and down, then rest
    top = rng.uniform(65, 95)
    a["rl1"] = np.deg2rad(4 + top * k)
    a["rl2"] = np.deg2rad(3 + (top + 20) * k - 35 * np.sin(np.pi * k) * 0.6)
    a["ll1"] = a["ll1"] * 0 + np.deg2rad(2)
    a["ll2"] = a["ll2"] * 0 + np.deg2rad(2)
    a["la1"] = np.deg2rad(12 + 55 * k)
    a["ra1"] = np.deg2rad(12 + 40 * k)
    a["la2"] = np.deg2rad(10 + 60 * k)
    a["ra2"] = np.deg2rad(10 + 30 * k)
    a["lean"] = np.deg2rad(12) * k
    return _front(t, rng, a, mirror)


def punch(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(1.0, 1.5) * speed
    ph = rng.uniform(0, 2 * np.pi)
    for arm, off in (("l", 0.0), ("r", np.pi)):
        e = np.clip(np.sin(w * t + ph + off), 0, 1) ** 2         # 1 = arm extended across
        a[arm + "a1"] = np.deg2rad(35 + 50 * e)
        a[arm + "a2"] = np.deg2rad(-140 + 215 * e)
    return _front(t, rng, a, mirror)


def arm_circles(t, rng, speed, mirror):
    a = _idle(t, rng)
    w = 2 * np.pi * rng.uniform(0.7, 1.1) * speed
    ph = w * t + rng.uniform(0, 2 * np.pi)
    for arm in ("l", "r"):
        ang = np.deg2rad(90) + np.deg2rad(35) * np.sin(ph)
        a[arm + "a1"] = ang
        a[arm + "a2"] = ang + np.deg2rad(8)
    return _front(t, rng, a, mirror)


def walk(t, rng, speed, mirror):
    """Side-view walk with opposite arm/leg swing; translation in body units per second."""
    f = rng.uniform(0.8, 1.05) * speed
    p = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    amp = np.deg2rad(rng.uniform(20, 27))
    d = -1 if mirror else 1
    a = {}
    for leg, off in (("l", 0.0), ("r", np.pi)):
        th = amp * np.sin(p + off)
        flex = np.deg2rad(45) * np.clip(np.cos(p + off), 0, 1) ** 1.5
        a[leg + "l1"] = th
        a[leg + "l2"] = th - flex
    for arm, off in (("l", np.pi), ("r", 0.0)):
        sw = 0.8 * amp * np.sin(p + off)
        a[arm + "a1"] = sw
        a[arm + "a2"] = sw + np.deg2rad(18)
    a["lean"] = np.full_like(t, np.deg2rad(rng.uniform(2, 6)))
    a["head"] = np.zeros_like(t)
    a["lift"] = np.zeros_like(t)
    a["dx"] = d * t * (4 * np.sin(amp) * (THIGH + SHIN) * f) * rng.uniform(0.55, 0.75)
    return Motion(view="side", facing=d, yaw=0.0, **a)


MotionProgram = Callable[[np.ndarray, np.random.Generator, float, bool], Motion]
PROGRAMS: dict[str, MotionProgram] = {
    "wave_one": wave_one, "wave_both": wave_both, "clap": clap, "squat": squat, "jump": jump,
    "kick": kick, "punch": punch, "arm_circles": arm_circles, "walk": walk,
}
