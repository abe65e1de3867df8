"""Pose-inference speed: frames/s per core of the ONNX Runtime backend vs ultralytics on torch.

`measure_pose_fps` is called by `csvr bench preprocess`; `python -m csvr.benchmarks.pose` runs it alone.
Timings cover the whole `estimate` call (letterbox, inference, decoding, NMS), on frames of the given
size, after one warm-up batch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

log = logging.getLogger(__name__)


def bench_frames(height: int = 240, width: int = 320, n: int = 8) -> np.ndarray:
    """(n, height, width, 3) uint8 RGB frames with people in them (ultralytics' bus.jpg), or noise."""
    import cv2

    img = None
    try:
        import importlib.util

        spec = importlib.util.find_spec("ultralytics")
        if spec and spec.submodule_search_locations:
            p = Path(next(iter(spec.submodule_search_locations))) / "assets" / "bus.jpg"
            bgr = cv2.imread(str(p)) if p.is_file() else None
            if bgr is not None:
                img = cv2.resize(bgr[:, :, ::-1], (width, height), interpolation=cv2.INTER_AREA)
    except (ImportError, ValueError):
        img = None
    if img is None:
        log.warning("bus.jpg not found; benchmarking on noise frames")
        img = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # small per-frame shifts so frames differ
    return np.stack([np.roll(img, 3 * i, axis=1) for i in range(n)]).astype(np.uint8)


def _time(fn, batch, seconds: float) -> dict[str, float]:
    """Wall-clock frames/s and frames per CPU-second of this process (robust to other load on the host)."""
    fn(batch)  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(batch)
        n += len(batch)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            cpu = time.process_time() - c0
            return {"fps": n / dt, "fps_per_cpu_second": n / cpu if cpu > 0 else float("nan"), "frames": n}


def measure_pose_fps(
    *,
    height: int = 240,
    width: int = 320,
    batch_sizes: tuple[int, ...] = (1, 8),
    threads: int = 1,
    seconds: float = 3.0,
    runtimes: tuple[str, ...] = ("onnxruntime", "ultralytics"),
    imgsz: int = 320,
) -> dict[str, Any]:
    """Frames/s (and per core) of YOLO11n-pose at `height`x`width` input for each runtime and batch size.

    Returns {"input": [H, W], "threads": n, "loadavg_1min", "results": [{runtime, batch, fps, fps_per_core,
    fps_per_cpu_second, frames}, ...]}. `fps_per_core` is wall-clock frames/s / threads (true only on an
    idle host); `fps_per_cpu_second` divides by this process's CPU time and is robust to other load.
    "ultralytics" is ultralytics' own predictor on torch (imports torch/torchvision; slow to start).
    """
    results = []
    frames = bench_frames(height, width, max(batch_sizes))
    if "onnxruntime" in runtimes:
        from csvr.preprocess.pose.yolo import YoloPoseEstimator

        for b in batch_sizes:
            est = YoloPoseEstimator(threads=threads, batch_size=b, imgsz=imgsz)
            r = _time(lambda x: est.estimate(x, None, None), frames[:b], seconds)
            results.append({"runtime": "onnxruntime", "batch": b, **r, "fps_per_core": r["fps"] / threads})
            log.info("onnxruntime batch %d: %.1f frames/s", b, r["fps"])
    if "ultralytics" in runtimes:
        model = _ultralytics_model(threads)
        for b in batch_sizes:
            bgr = [f[:, :, ::-1].copy() for f in frames[:b]]
            r = _time(lambda x: model.predict(x, imgsz=imgsz, verbose=False, batch=len(x)), bgr, seconds)
            results.append({"runtime": "ultralytics-torch", "batch": b, **r, "fps_per_core": r["fps"] / threads})
            log.info("ultralytics batch %d: %.1f frames/s", b, r["fps"])
    return {
        "input": [height, width], "imgsz": imgsz, "threads": threads, "results": results,
        "loadavg_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
    }


def _ultralytics_model(threads: int):
    """ultralytics' YOLO on the shipped checkpoint, on torch with `threads` threads (benchmark only)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch

    from csvr.torchvision_compat import import_torchvision

    torch.set_num_threads(threads)
    import_torchvision()
    import torchvision.ops.boxes as tv_boxes

    # the CPU operator shim registers a Python nms; torchvision's wrapper refuses to call it without this
    tv_boxes._assert_has_ops = lambda: None  # noqa: SLF001
    from ultralytics import YOLO

    from csvr.preprocess.pose.yolo import find_yolo_weights

    return YOLO(str(find_yolo_weights()))


@click.command()
@click.option("--threads", default=1, show_default=True, help="onnxruntime intra-op / torch threads")
@click.option("--seconds", default=3.0, show_default=True, help="timing per configuration")
@click.option("--batch", "batches", multiple=True, type=int, default=(1, 8), show_default=True)
@click.option("--size", default="240x320", show_default=True, help="input HxW")
@click.option("--imgsz", default=320, show_default=True, help="network input size (long side; a multiple of 32)")
@click.option("--no-ultralytics", is_flag=True, help="skip the ultralytics/torch comparison")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write results here")
def cli(threads, seconds, batches, size, imgsz, no_ultralytics, json_out):
    """Pose frames/s per core: YOLO11n-pose on ONNX Runtime vs ultralytics/torch."""
    h, w = (int(v) for v in size.lower().split("x"))
    runtimes = ("onnxruntime",) if no_ultralytics else ("onnxruntime", "ultralytics")
    res = measure_pose_fps(height=h, width=w, batch_sizes=tuple(batches), threads=threads, seconds=seconds, runtimes=runtimes,
                           imgsz=imgsz)
    for r in res["results"]:
        click.echo(
            f"{r['runtime']:>18} batch {r['batch']:>2}: {r['fps']:7.1f} frames/s "
            f"({r['fps_per_core']:.1f} per core wall, {r['fps_per_cpu_second']:.1f} per CPU-second; {h}x{w}, "
            f"imgsz {imgsz}, {threads} thread(s))"
        )
    click.echo(f"load average (1 min) during the run: {res['loadavg_1min']:.2f} on {res['cpu_count']} cores")
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2))
        click.echo(f"wrote {json_out}")


if __name__ == "__main__":
    cli()
