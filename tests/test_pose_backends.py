"""groundtruth backend conversion and refusals; openpifpaf backend error messages and conversion."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from csvr.preprocess.pose import build_estimator
from csvr.preprocess.pose.groundtruth import joints_path_for, joints_to_pose

from pose_testdata import H, W, _write_video, tiny_synth  # noqa: F401  (fixture)


def test_joints_path_layout():
    assert joints_path_for(Path("/d/UCF-101/Clap/v_Clap_g01_c02.avi")) == Path("/d/joints/Clap/v_Clap_g01_c02.npz")


def test_groundtruth_conversion_values(tiny_synth):
    root, video, joints, visible = tiny_synth
    est = build_estimator("groundtruth", max_people=2)
    assert est.name == "groundtruth" and est.weights_sha256 is None
    frames = np.zeros((3, 10, 12, 3), np.uint8)  # frame size is irrelevant: joints are in source pixels
    out = est.estimate(frames, np.array([1, 0, 3]), video)
    assert out.keypoints.shape == (3, 2, 17, 3) and out.boxes.shape == (3, 2, 5)
    # row 0 is source frame 1
    kp = out.keypoints[0, 0]
    np.testing.assert_allclose(kp[2, :2], joints[1, 2] / [W, H], rtol=1e-6)
    assert kp[2, 2] == 1.0
    assert not kp[[0, 3, 16]].any()
    vis = visible[1]
    np.testing.assert_allclose(out.boxes[0, 0, :2], (joints[1, vis] / [W, H]).min(0), rtol=1e-6)
    np.testing.assert_allclose(out.boxes[0, 0, 2:4], (joints[1, vis] / [W, H]).max(0), rtol=1e-6)
    assert out.boxes[0, 0, 4] == 1.0
    np.testing.assert_allclose(out.keypoints[1, 0, :, :2], joints[0] / [W, H], rtol=1e-6)
    assert not out.keypoints[2].any() and not out.boxes[2].any()  # frame 3: nothing visible
    assert not out.keypoints[:, 1].any() and not out.boxes[:, 1].any()  # second slot always empty


def test_joints_to_pose_clips_and_handles_nan():
    joints = np.array([[[-5.0, 10.0]] + [[10.0, 10.0]] * 15 + [[np.nan, 1.0]]], np.float32)
    visible = np.ones((1, 17), bool)
    kp, box = joints_to_pose(joints, visible, 20, 20)
    assert kp[0, 0, 0] == 0.0 and kp[0, 0, 2] == 1.0  # clipped into the frame
    assert not kp[0, 16].any()  # non-finite joint treated as missing
    np.testing.assert_allclose(box[0], [0.0, 0.5, 0.5, 0.5, 1.0])


def test_groundtruth_refuses_datasets_without_joints(tiny_synth, tmp_path):
    root, video, *_ = tiny_synth
    est = build_estimator("groundtruth")
    other = tmp_path / "real" / "UCF-101" / "Wave" / "v_Wave_g01_c01.avi"
    _write_video(other)
    with pytest.raises(FileNotFoundError, match=r"no ground-truth joints .*csvr synth"):
        est.estimate(np.zeros((1, 4, 4, 3), np.uint8), [0], other)
    with pytest.raises(IndexError, match="outside the 4 frames"):
        est.estimate(np.zeros((1, 4, 4, 3), np.uint8), [4], video)
    with pytest.raises(ValueError, match="needs video_path"):
        est.estimate(np.zeros((1, 4, 4, 3), np.uint8), [0], None)
    bad = root / "joints" / "Wave" / "v_Wave_g01_c02.npz"
    np.savez(bad, points=np.zeros((2, 17, 2)))
    _write_video(root / "UCF-101" / "Wave" / "v_Wave_g01_c02.avi")
    with pytest.raises(ValueError, match=r"v_Wave_g01_c02.npz: joints file must hold"):
        est.estimate(np.zeros((1, 4, 4, 3), np.uint8), [0], root / "UCF-101" / "Wave" / "v_Wave_g01_c02.avi")


def test_openpifpaf_not_installed_message():
    if importlib.util.find_spec("openpifpaf") is not None:
        pytest.skip("openpifpaf is installed here")
    with pytest.raises(ImportError, match=r"openpifpaf package, which is not installed: pip install"):
        build_estimator("openpifpaf", checkpoint="x.pkl")


class _FakeAnn:
    def __init__(self, score: float, x: float) -> None:
        self.score = score
        self.data = np.zeros((17, 3), np.float32)
        self.data[:, 0], self.data[:, 1], self.data[:, 2] = x, 20.0, 0.5
        self.data[5, 2] = 0.0  # a joint openpifpaf did not find

    def bbox(self):
        return [self.data[:, 0].min() - 2, 10.0, 4.0, 20.0]


@pytest.fixture()
def fake_openpifpaf(monkeypatch):
    mod = types.ModuleType("openpifpaf")
    mod.__spec__ = importlib.machinery.ModuleSpec("openpifpaf", None)

    class Predictor:
        def __init__(self, checkpoint: str) -> None:
            self.checkpoint = checkpoint

        def numpy_images(self, images):
            for i, _ in enumerate(images):
                anns = [] if i == 1 else [_FakeAnn(0.3, 10.0), _FakeAnn(0.9, 30.0), _FakeAnn(0.5, 50.0)]
                yield anns, None, None

    mod.Predictor = Predictor
    monkeypatch.setitem(sys.modules, "openpifpaf", mod)
    return mod


def test_openpifpaf_checkpoint_errors_and_conversion(fake_openpifpaf, tmp_path):
    with pytest.raises(ValueError, match="needs checkpoint=PATH"):
        build_estimator("openpifpaf")
    with pytest.raises(FileNotFoundError, match="openpifpaf checkpoint not found: .*nope.pkl"):
        build_estimator("openpifpaf", checkpoint=tmp_path / "nope.pkl")
    ck = tmp_path / "shufflenetv2k16.pkl"
    ck.write_bytes(b"weights")
    est = build_estimator("openpifpaf", checkpoint=ck, max_people=2)
    assert est.name == "openpifpaf:shufflenetv2k16.pkl" and len(est.weights_sha256) == 64
    out = est.estimate(np.zeros((2, 40, 80, 3), np.uint8), [0, 1], tmp_path / "v.avi")
    np.testing.assert_allclose(out.boxes[0, :, 4], [0.9, 0.5])  # best two, sorted by score
    np.testing.assert_allclose(out.keypoints[0, 0, 0], [30 / 80, 20 / 40, 0.5])
    assert not out.keypoints[0, 0, 5].any()
    np.testing.assert_allclose(out.boxes[0, 0, :4], [28 / 80, 10 / 40, 32 / 80, 30 / 40])
    assert not out.keypoints[1].any() and not out.boxes[1].any()
