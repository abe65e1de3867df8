"""Tests of the skeleton and motion programs: each action moves the joints it should."""

from __future__ import annotations

import numpy as np
import pytest

from csvr.data_manifests.synthetic import skeleton as sk

T = np.arange(125) / 25.0


def _pose(name: str, seed: int = 0, mirror: bool = False) -> sk.Pose:
    return sk.forward_kinematics(sk.PROGRAMS[name](T, np.random.default_rng(seed), 1.0, mirror))


@pytest.mark.parametrize("name", sorted(sk.PROGRAMS))
def test_shapes_feet_on_ground_and_upright(name: str) -> None:
    p = _pose(name)
    assert p.joints.shape == (125, 17, 2) and p.visible.shape == (125, 17)
    feet = np.maximum(p.joints[:, sk.LANK, 1], p.joints[:, sk.RANK, 1]) + sk.FOOT_H
    if name != "jump":
        np.testing.assert_allclose(feet, 0.0, atol=1e-9)           # a foot touches the ground
    assert (p.joints[:, sk.NOSE, 1] < p.joints[:, sk.LHIP, 1]).all()  # head above hips
    # bone lengths are constant
    np.testing.assert_allclose(np.linalg.norm(p.joints[:, sk.LELB] - p.joints[:, sk.LSHO], axis=1), sk.UPPER_ARM)
    np.testing.assert_allclose(np.linalg.norm(p.joints[:, sk.RKNE] - p.joints[:, sk.RANK], axis=1), sk.SHIN)


def _range(p: sk.Pose, joint: int, axis: int) -> float:
    return float(np.ptp(p.joints[:, joint, axis]))


def test_actions_move_the_right_joints() -> None:
    wave = _pose("wave_one")
    assert (wave.joints[:, sk.RWRI, 1] < wave.joints[:, sk.NOSE, 1]).mean() > 0.9   # hand above the head
    assert (wave.joints[:, sk.LWRI, 1] > wave.joints[:, sk.LHIP, 1] - 0.1).all()    # other hand down
    mirrored = _pose("wave_one", mirror=True)
    assert (mirrored.joints[:, sk.LWRI, 1] < mirrored.joints[:, sk.NOSE, 1]).mean() > 0.9
    both = _pose("wave_both")
    assert ((both.joints[:, [sk.LWRI, sk.RWRI], 1] < both.joints[:, [sk.NOSE], 1]).mean()) > 0.9
    squat = _pose("squat")
    assert _range(squat, sk.LHIP, 1) > 0.15 and _range(squat, sk.LANK, 1) < 0.01
    jump = _pose("jump")
    assert jump.joints[:, sk.LANK, 1].min() < -0.1 - sk.FOOT_H                       # feet leave the ground
    kick = _pose("kick")
    assert _range(kick, sk.RANK, 1) > 0.3 and _range(kick, sk.LANK, 1) < 0.01
    clap = _pose("clap")
    gap = np.abs(clap.joints[:, sk.LWRI, 0] - clap.joints[:, sk.RWRI, 0])
    assert gap.min() < 0.08 and gap.max() > 0.2                                      # hands meet and part
    walk = _pose("walk")
    assert walk.view == "side" and abs(walk.joints[-1, sk.LHIP, 0] - walk.joints[0, sk.LHIP, 0]) > 0.5
    order = np.sign(walk.joints[:, sk.LANK, 0] - walk.joints[:, sk.RANK, 0])
    assert (np.diff(order) != 0).sum() >= 6                                          # feet alternate
    assert not walk.visible[:, [sk.LEYE, sk.LEAR]].any() and walk.visible[:, sk.REYE].all()


def test_programs_vary_with_seed() -> None:
    a, b = _pose("wave_one", 0), _pose("wave_one", 1)
    assert not np.allclose(a.joints, b.joints)
    np.testing.assert_array_equal(a.joints, _pose("wave_one", 0).joints)
