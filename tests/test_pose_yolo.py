"""YOLO11n-pose ONNX backend: output format on real images, NMS, letterbox geometry, export cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from csvr.preprocess.pose import PoseBatch, build_estimator
from csvr.preprocess.pose import yolo as Y

pytest.importorskip("onnxruntime")


def _asset(name: str) -> np.ndarray:
    import cv2

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ultralytics (which ships the test photos) is not installed")
    p = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
    if not p.is_file():
        pytest.skip(f"{p} missing")
    return np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1])


@pytest.fixture(scope="module")
def est():
    try:
        Y.find_yolo_weights()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return build_estimator("yolo", threads=1, max_people=2)


def test_identity_recorded(est):
    d = est.describe()
    assert d["name"] == "yolo11n-pose"
    assert len(d["weights_sha256"]) == 64 and d["weights_sha256"] == Y.sha256_file(Y.find_yolo_weights())
    assert len(d["onnx_sha256"]) == 64 and d["onnx_sha256"] == Y.sha256_file(est.onnx_path)
    assert est.onnx_path.name.startswith(f"yolo11n-pose-{d['weights_sha256'][:16]}")


def test_keypoint_format_on_real_photo(est):
    img = _asset("bus.jpg")  # 810x1080, four pedestrians
    b = est.estimate(img[None], np.array([0]), None)
    assert isinstance(b, PoseBatch)
    assert b.keypoints.shape == (1, 2, 17, 3) and b.keypoints.dtype == np.float32
    assert b.boxes.shape == (1, 2, 5) and b.boxes.dtype == np.float32
    assert (b.boxes[0, :, 4] > 0.5).all()
    assert b.boxes[0, 0, 4] >= b.boxes[0, 1, 4]  # sorted by score
    assert (b.keypoints[..., :2] >= 0).all() and (b.keypoints[..., :2] <= 1).all()
    box = b.boxes[0, 0]
    assert box[0] < box[2] and box[1] < box[3]
    # the best person (left pedestrian) as ultralytics reports it at imgsz 320: xyxyn 0.060 0.369 0.292 0.838
    np.testing.assert_allclose(box[:4], [0.060, 0.369, 0.292, 0.838], atol=0.01)
    kp = b.keypoints[0, 0]
    seen = kp[:, 2] > 0.5
    assert seen.sum() >= 12
    # confident joints lie inside (a slightly grown) box, head above ankles
    assert (kp[seen, 0] >= box[0] - 0.03).all() and (kp[seen, 0] <= box[2] + 0.03).all()
    assert (kp[seen, 1] >= box[1] - 0.03).all() and (kp[seen, 1] <= box[3] + 0.03).all()
    assert kp[0, 1] < kp[15, 1] and kp[0, 1] < kp[16, 1]


def test_normalisation_is_resolution_independent(est):
    import cv2

    img = _asset("zidane.jpg")  # 1280x720
    small = cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA)
    a = est.estimate(img[None], [0], None)
    b = est.estimate(small[None], [0], None)
    np.testing.assert_allclose(a.boxes[0, 0, :4], b.boxes[0, 0, :4], atol=0.02)
    both = (a.keypoints[0, 0, :, 2] > 0.5) & (b.keypoints[0, 0, :, 2] > 0.5)
    assert both.sum() >= 8
    np.testing.assert_allclose(a.keypoints[0, 0, both, :2], b.keypoints[0, 0, both, :2], atol=0.03)


def test_absent_people_are_zeros_and_batching_is_consistent(est):
    img = _asset("zidane.jpg")
    blank = np.full_like(img, 128)
    batch = np.stack([img, blank, img])
    est.batch_size = 2  # split 3 frames into batches of 2 and 1
    out = est.estimate(batch, np.arange(3), None)
    assert out.keypoints.shape == (3, 2, 17, 3)
    assert not out.keypoints[1].any() and not out.boxes[1].any()
    np.testing.assert_allclose(out.keypoints[0], out.keypoints[2], atol=1e-5)
    single = est.estimate(img[None], [0], None)
    np.testing.assert_allclose(out.boxes[0], single.boxes[0], atol=1e-4)
    # a missing joint is all zeros, never a coordinate with confidence 0
    missing = out.keypoints[..., 2] == 0
    assert not out.keypoints[missing].any()


def test_bad_input_is_refused(est):
    with pytest.raises(ValueError, match="uint8"):
        est.estimate(np.zeros((1, 32, 32, 3), np.float32), [0], None)
    with pytest.raises(ValueError, match="source_indices"):
        est.estimate(np.zeros((2, 32, 32, 3), np.uint8), [0], None)
    with pytest.raises(ValueError, match="unknown pose backend"):
        build_estimator("posenet")
    assert est.estimate(np.zeros((0, 32, 32, 3), np.uint8), [], None).keypoints.shape == (0, 2, 17, 3)


def test_nms_on_hand_made_boxes():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # A
            [1, 1, 11, 11],  # overlaps A: IoU = 81 / 119 = 0.68
            [0, 0, 10, 5],  # inside A: IoU 0.5
            [20, 20, 30, 30],  # separate
            [21, 20, 31, 30],  # overlaps previous: IoU 90/110 = 0.82
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    np.testing.assert_allclose(Y.box_iou(boxes[:1], boxes[1:2])[0, 0], 81 / 119, rtol=1e-6)
    assert Y.nms(boxes, scores, 0.7).tolist() == [4, 0, 1, 2]
    assert Y.nms(boxes, scores, 0.6).tolist() == [4, 0, 2]
    assert Y.nms(boxes, scores, 0.4).tolist() == [4, 0]
    assert Y.nms(boxes, scores, 0.7, max_keep=2).tolist() == [4, 0]
    assert Y.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_letterbox_geometry_and_inverse_mapping():
    g = Y.letterbox_geometry(480, 640, 320)
    assert (g.new_h, g.new_w, g.in_h, g.in_w, g.pad_x, g.pad_y) == (240, 320, 256, 320, 0, 8)
    g2 = Y.letterbox_geometry(1080, 810, 320)  # portrait
    assert (g2.new_h, g2.new_w, g2.in_h, g2.in_w) == (320, 240, 320, 256) and g2.pad_x == 8
    pts = np.array([[0, 0], [639.5, 479.5], [123.25, 77.0]], np.float32)
    np.testing.assert_allclose(g.to_source(g.to_input(pts)), pts, atol=1e-4)
    # a bright block placed in the source lands where to_input says
    frame = np.zeros((1, 480, 640, 3), np.uint8)
    frame[0, 200:220, 400:420] = 255
    x, g = Y.letterbox(frame, 320)
    assert x.shape == (1, 3, 256, 320) and x.dtype == np.float32
    ys, xs = np.nonzero(x[0, 0] > 0.9)
    centre_in = g.to_input(np.array([[410.0, 210.0]]))[0]
    assert abs(xs.mean() + 0.5 - centre_in[0]) < 1.0 and abs(ys.mean() + 0.5 - centre_in[1]) < 1.0
    assert x[0, 0, 0, 0] == pytest.approx(114 / 255)  # padding row


def test_decode_maps_back_to_normalised_source():
    """A hand-made network output decodes to the expected normalised box and keypoints."""
    g = Y.letterbox_geometry(480, 640, 320)  # scale 0.5, pad_y 8
    pred = np.zeros((1, 56, 3), np.float32)
    # candidate 0: box centred at source (320, 240) of size 200x400 -> input centre (160, 128), size 100x200
    pred[0, :5, 0] = [160, 128, 100, 200, 0.9]
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = 160, 128, 0.8
    kp[3] = [500, 128, 0.9]  # outside the frame: absent
    kp[4, 2] = 0.01  # below keypoint threshold: absent
    pred[0, 5:, 0] = kp.reshape(-1)
    pred[0, :5, 1] = [160, 128, 100, 200, 0.1]  # below person threshold
    pred[0, :5, 2] = [162, 128, 100, 200, 0.5]  # duplicate of 0: suppressed
    out = Y.decode_predictions(pred, g, max_people=2)
    np.testing.assert_allclose(out.boxes[0, 0], [220 / 640, 40 / 480, 420 / 640, 440 / 480, 0.9], atol=1e-5)
    assert not out.boxes[0, 1].any()
    np.testing.assert_allclose(out.keypoints[0, 0, 0], [0.5, 0.5, 0.8], atol=1e-5)
    assert not out.keypoints[0, 0, 3].any() and not out.keypoints[0, 0, 4].any()


def test_onnx_export_cache_is_keyed_and_atomic(tmp_path, monkeypatch):
    pt = tmp_path / "fake-pose.pt"
    pt.write_bytes(b"not really a checkpoint")
    calls = []

    def fake_export(src: Path, imgsz: int) -> Path:
        calls.append((src, imgsz))
        assert src.parent != tmp_path / "cache" and src.parent.parent == tmp_path / "cache"  # private temp dir
        out = src.with_suffix(".onnx")
        out.write_bytes(b"onnx bytes")
        return out

    monkeypatch.setattr(Y, "_export_with_ultralytics", fake_export)
    p1 = Y.ensure_onnx(pt, imgsz=320, cache=tmp_path / "cache")
    p2 = Y.ensure_onnx(pt, imgsz=320, cache=tmp_path / "cache")
    assert p1 == p2 and p1.read_bytes() == b"onnx bytes" and len(calls) == 1
    assert Y.sha256_file(pt)[:16] in p1.name
    assert [q.name for q in (tmp_path / "cache").iterdir()] == [p1.name]  # no temp leftovers
    pt.write_bytes(b"other weights")  # new weights -> new cache entry
    p3 = Y.ensure_onnx(pt, imgsz=320, cache=tmp_path / "cache")
    assert p3 != p1 and len(calls) == 2
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Y.ensure_onnx(tmp_path / "missing.pt", cache=tmp_path / "cache")


def test_real_clip_frames_have_a_person(est, real_clips):
    from csvr.preprocess.pose.quality import read_frames

    frames, idx = read_frames(real_clips / "ps7" / "PS7A1P1T1.avi", max_frames=8, step=5)
    assert len(frames) == 8 and idx.tolist() == list(range(0, 40, 5))
    out = est.estimate(frames, idx, real_clips / "ps7" / "PS7A1P1T1.avi")
    assert out.person_present[:, 0].all()
    assert (out.keypoints[:, 0, :, 2] > 0).sum(1).min() >= 8


def test_real_two_person_clip_main_actor_is_stable(est, real_clips):
    from csvr.preprocess.pose.quality import read_frames
    from csvr.preprocess.pose.tracking import select_main_actor

    clip = real_clips / "multi-person" / "pres_debate.avi"
    frames, idx = read_frames(clip, max_frames=12, step=4)
    out = est.estimate(frames, idx, clip)
    assert (out.person_present.sum(1) == 2).mean() >= 0.5  # two debaters seen in most frames
    main = select_main_actor(out.keypoints, out.boxes)
    assert (main >= 0).all()
    cx = (out.boxes[np.arange(len(main)), main, 0] + out.boxes[np.arange(len(main)), main, 2]) / 2
    assert np.abs(np.diff(cx)).max() < 0.1  # never jumps to the other person


def test_other_input_sizes_share_the_dynamic_export(est):
    """imgsz 416 runs the same (dynamic-size) ONNX file: no re-export; output as ultralytics gives at 416."""
    img = _asset("bus.jpg")
    e416 = build_estimator("yolo", threads=1, max_people=2, imgsz=416)
    assert e416.onnx_path == est.onnx_path and e416.describe()["imgsz"] == 416
    b = e416.estimate(img[None], np.array([0]), None)
    # ultralytics' predictor at imgsz 416 (torch): xyxyn 0.062 0.368 0.302 0.837, score 0.886
    np.testing.assert_allclose(b.boxes[0, 0], [0.062, 0.368, 0.302, 0.837, 0.886], atol=0.01)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_estimator("yolo", imgsz=400)
