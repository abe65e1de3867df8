"""`csvr bench formats` helpers: per-format bytes and quality on the same frames, and the projections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from csvr.benchmarks.formats import DATASETS, FORMATS, GOP, POSE_BYTES, _base, codec_rows, projected_bytes


def _frames(n: int = 4) -> np.ndarray:
    """Smooth gradients + a block: compressible like video, not constant."""
    y, x = np.mgrid[0:128, 0:171]
    out = np.empty((n, 128, 171, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (x + 3 * i) % 256
        out[i, ..., 1] = (y * 2) % 256
        out[i, ..., 2] = 128
        out[i, 40 + i:70 + i, 50:90] = (250, 20, 20)
    return out


def test_codec_rows_measure_each_step_one_format_on_the_same_frames():
    frames = _frames()
    rows = codec_rows(frames)
    assert set(rows) == {n for n in FORMATS if "step" not in n}
    assert rows["raw"]["bytes_per_frame"] == 128 * 171 * 3 and rows["raw"]["psnr_db"] == math.inf
    assert rows["lz4"]["psnr_db"] == math.inf and rows["zstd"]["psnr_db"] == math.inf  # lossless, checked
    assert rows["zstd"]["bytes_per_frame"] < rows["raw"]["bytes_per_frame"]
    q = [rows[f"jpeg-{k}"] for k in (75, 90, 95)]
    assert all(25 < r["psnr_db"] < 60 for r in q)
    assert q[0]["psnr_db"] < q[1]["psnr_db"] < q[2]["psnr_db"]  # quality orders PSNR ...
    assert q[0]["bytes_per_frame"] < q[1]["bytes_per_frame"] < q[2]["bytes_per_frame"] < 0.2 * 128 * 171 * 3  # ... and size


def test_projections_scale_with_the_frame_step_and_include_poses_and_iframes():
    assert _base("jpeg-90, step 4") == "jpeg-90" and _base("raw, step 4") == "raw"
    one, four = projected_bytes(1000.0, 1), projected_bytes(1000.0, 4)
    frames = DATASETS["UCF101"][1]
    assert one["UCF101"] == pytest.approx(frames * (1000 + POSE_BYTES) + frames / GOP * (1000 + 9))
    # the stored frames shrink 4x; the I-frames (one per GOP of source frames) do not
    assert four["UCF101"] == pytest.approx(frames / 4 * (1000 + POSE_BYTES) + frames / GOP * (1000 + 9))
