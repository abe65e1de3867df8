"""Pose quality measures: PCK by hand, detection statistics, and the measurement commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csvr.preprocess.pose import PoseBatch, build_estimator
from csvr.preprocess.pose import quality as Q

from pose_testdata import tiny_synth  # noqa: F401  (fixture)


@pytest.fixture
def yolo_weights() -> None:
    """Skips the test when the YOLO pose model cannot run here (no onnxruntime or no local weights)."""
    pytest.importorskip("onnxruntime")
    from csvr.preprocess.pose.yolo import find_yolo_weights

    try:
        find_yolo_weights()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def _gt() -> tuple[np.ndarray, np.ndarray]:
    """One frame, 100x100 image: shoulders at y=20, hips at y=60, x = 40/60 -> torso diagonal = sqrt(20^2+40^2)."""
    xy = np.full((1, 17, 2), 50.0)
    xy[0, 5], xy[0, 6], xy[0, 11], xy[0, 12] = [40, 20], [60, 20], [40, 60], [60, 60]
    vis = np.ones((1, 17), bool)
    return xy, vis


def test_reference_lengths_by_hand():
    xy, vis = _gt()
    torso = np.hypot(20, 40)
    assert Q.reference_length(xy, vis, "torso")[0] == pytest.approx(torso)
    assert Q.reference_length(xy, vis, "bbox")[0] == pytest.approx(40.0)
    vis2 = vis.copy()
    vis2[0, 6] = False  # one diagonal left
    assert Q.reference_length(xy, vis2, "torso")[0] == pytest.approx(torso)
    vis2[0, 5] = False
    assert np.isnan(Q.reference_length(xy, vis2, "torso")[0])
    with pytest.raises(ValueError, match="torso"):
        Q.reference_length(xy, vis, "head")


def test_pck_by_hand():
    xy, vis = _gt()
    torso = np.hypot(20, 40)  # 44.72; threshold at alpha 0.2 = 8.94 px
    kp = np.zeros((1, 2, 17, 3), np.float32)
    kp[0, 0, :, :2] = xy[0] / 100
    kp[0, 0, :, 2] = 0.9
    kp[0, 0, 0, 0] += 0.08  # 8 px off: hit at 0.2
    kp[0, 0, 1, 0] += 0.10  # 10 px off: miss at 0.2, hit at 0.5
    kp[0, 0, 2] = 0  # not detected: miss
    boxes = np.zeros((1, 2, 5), np.float32)
    boxes[0, 0] = [0.38, 0.18, 0.62, 0.62, 0.9]
    boxes[0, 1] = [0.0, 0.0, 0.1, 0.1, 0.95]  # someone else: ignored by box matching
    kp[0, 1, :, 2] = 1.0
    pb = PoseBatch(kp, boxes)
    r = Q.pck(pb, xy, vis, (100, 100), alpha=0.2, norm="torso")
    assert r == {"pck": pytest.approx(15 / 17), "joints": 17, "frames_scored": 1, "frames_matched": 1}
    assert Q.pck(pb, xy, vis, (100, 100), alpha=0.5)["pck"] == pytest.approx(16 / 17)
    assert 0.2 * torso < 10 < 0.5 * torso
    empty = PoseBatch.empty(1, 2)
    assert Q.pck(empty, xy, vis, (100, 100))["pck"] == 0.0  # no detection = all misses
    with pytest.raises(ValueError, match="ground-truth frames"):
        Q.pck(PoseBatch.empty(2, 2), xy, vis, (100, 100))


def test_detection_stats():
    pb = PoseBatch.empty(4, 2)
    pb.boxes[:3, 0] = [0.1, 0.1, 0.5, 0.9, 0.8]
    pb.keypoints[:3, 0, :10, 2] = 0.5
    s = Q.detection_stats(pb)
    assert s["frames"] == 4 and s["detection_rate"] == 0.75 and s["main_actor_rate"] == 0.75
    assert s["main_joint_conf"] == pytest.approx(0.5 * 10 / 17)
    assert s["main_joints_visible"] == pytest.approx(10 / 17)


def test_measure_synthetic_with_groundtruth_is_perfect(tiny_synth, tmp_path):  # noqa: F811
    root, video, joints, visible = tiny_synth
    res = Q.measure_synthetic(build_estimator("groundtruth"), root)
    assert res["videos"] == 1 and res["frames"] == 4
    assert res["detection_rate"] == 0.75  # frame 3 has no visible joint
    assert res["pck@0.2_torso"] == 1.0 and res["pck@0.1_bbox"] == 1.0
    with pytest.raises(FileNotFoundError, match="no videos with ground-truth joints"):
        Q.measure_synthetic(build_estimator("groundtruth"), tmp_path / "empty")


def test_quality_cli_on_real_clip(real_clips, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "q.json"
    clip = real_clips / "ps7" / "PS7A2P1T1.avi"
    from click.testing import CliRunner

    r = CliRunner().invoke(Q.cli, ["real", str(clip), "--max-frames", "6", "--step", "10", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "detection_rate: 1.0000" in r.output
    res = json.loads(out.read_text())
    assert res["videos"] == 1 and res["frames"] == 6
    assert res["detection_rate"] == 1.0 and res["main_actor_rate"] == 1.0
    assert res["pose_model"]["name"] == "yolo11n-pose"


def test_bench_smoke():
    pytest.importorskip("onnxruntime")
    from csvr.benchmarks.pose import measure_pose_fps

    try:
        res = measure_pose_fps(batch_sizes=(2,), seconds=0.05, runtimes=("onnxruntime",))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert res["input"] == [240, 320] and res["threads"] == 1
    (r,) = res["results"]
    assert r["runtime"] == "onnxruntime" and r["batch"] == 2 and r["frames"] >= 2
    assert r["fps"] > 0 and r["fps_per_cpu_second"] > 0


def test_yolo_on_synthetic_figures(yolo_weights, tmp_path):
    """The default estimator finds the generator's figures and their joints (PCK against ground truth)."""
    from csvr.data_manifests.synthetic import generate

    root = generate(tmp_path / "synth", videos_per_class=2, num_classes=2, seed=0)
    res = Q.measure_synthetic(build_estimator("yolo"), root, max_videos=4, max_frames=12, step=3)
    assert res["videos"] == 4 and res["frames"] == 48
    assert res["detection_rate"] >= 0.8
    assert res["pck@0.2_torso"] >= 0.6 and res["pck@0.5_bbox"] >= res["pck@0.2_torso"]


def test_above_threshold_is_decoding_at_that_threshold():
    """The sweep decodes once at the lowest threshold; keeping the detections above a higher one gives what
    decoding at it gives (greedy NMS, people sorted by score)."""
    from csvr.preprocess.pose.yolo import decode_predictions, letterbox_geometry

    rng = np.random.default_rng(3)
    n = 300
    pred = np.zeros((2, 56, n), np.float32)
    pred[:, 0] = rng.uniform(20, 300, (2, n))  # cx
    pred[:, 1] = rng.uniform(20, 220, (2, n))  # cy
    pred[:, 2:4] = rng.uniform(10, 120, (2, 2, n))  # w, h: many overlaps
    pred[:, 4] = rng.uniform(0, 0.6, (2, n))
    pred[:, 5:] = rng.uniform(0, 320, (2, 51, n))
    pred[:, 7::3] = rng.uniform(0, 1, (2, 17, n))
    geom = letterbox_geometry(240, 320, 320)
    low = decode_predictions(pred, geom, max_people=3, conf_threshold=0.1)
    for c in (0.25, 0.4, 0.55):
        want = decode_predictions(pred, geom, max_people=3, conf_threshold=c)
        got = Q.above_threshold(low, c)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.keypoints, want.keypoints)


def test_frame_variants():
    assert Q.frame_variant_size("source", 480, 640) == (480, 640)
    assert Q.frame_variant_size("cap320", 480, 640) == (240, 320)
    assert Q.frame_variant_size("cap320", 120, 160) == (120, 160)  # never upscaled, like --pose-cap
    assert Q.frame_variant_size("stored", 1080, 1920) == (128, 171)
    assert Q.frame_variant_size("90x120", 480, 640) == (90, 120)
    with pytest.raises(ValueError, match="frame variant"):
        Q.frame_variant_size("half", 480, 640)
    assert Q.parse_input("416:cap416") == (416, "cap416")
    with pytest.raises(ValueError, match="IMGSZ:FRAMES"):
        Q.parse_input("416")
    name, tr = Q.parse_tracker("loose:min_frames=2,min_score=0.1")
    assert name == "loose" and tr.min_frames == 2 and tr.min_score == 0.1
    assert Q.parse_tracker("none")[1].min_frames == 1


def test_sweep_end_to_end_with_cache(real_clips, yolo_weights, tmp_path):
    from click.testing import CliRunner

    from csvr.data_manifests.synthetic import generate

    synth = generate(tmp_path / "synth", videos_per_class=2, num_classes=1, seed=0)
    neg = tmp_path / "neg"
    Q.write_negative_crops(real_clips, neg)
    assert sorted(p.name for p in neg.iterdir()) == sorted(f"{k}.avi" for k in Q.NEGATIVE_CROPS)
    args = ["sweep", "--real", str(real_clips / "kth"), "--negative", str(neg / "ps7_wall.avi"), "--synthetic", str(synth),
            "--input", "320:cap320", "--input", "320:stored", "--conf", "0.1", "--conf", "0.25",
            "--tracker", "none", "--tracker", "default", "--max-frames", "10", "--cache", str(tmp_path / "cache")]
    r1 = CliRunner().invoke(Q.cli, args + ["--json", str(tmp_path / "a.json")])
    assert r1.exit_code == 0, r1.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["real_videos"] == 1 and a["negative_videos"] == 1 and a["synthetic_videos"] == 2
    assert len(a["rows"]) == 2 * 2 * 2
    for row in a["rows"]:
        assert 0 <= row["real_coverage"] <= row["real_detection"] <= 1
        assert row["coverage_kth"] == row["real_coverage"]
        assert 0 <= row["negative_actor"] <= 1 and 0 <= row["main_pck"] <= row["pck"] + 1e-9 <= 1 + 1e-9
        assert row["fps_per_cpu_second"] > 0
    r2 = CliRunner().invoke(Q.cli, args + ["--json", str(tmp_path / "b.json")])  # from the cache: same rows
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "b.json").read_text())["rows"] == a["rows"]
    r3 = CliRunner().invoke(Q.cli, ["table", str(tmp_path / "a.json"), "--brief", "--tracker", "default", "--conf", "0.1"])
    assert r3.exit_code == 0, r3.output
    lines = r3.output.strip().splitlines()
    assert len(lines) == 2 + 2 and "PCK@0.2 main actor" in lines[0] and "| default |" in lines[2]
