"""Encode frames to a compressed video with PyAV, with a fixed GOP and no scene-cut I-frames.

`gop` frames between I-frames, or a single I-frame for the whole video (`gop=None`), like most real
UCF101/HMDB51 files. Encoding is single-threaded so the output bytes depend only on the input frames.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Iterable

import av
import numpy as np

CODECS = ("mpeg4", "libx264")
SINGLE_GOP = 1 << 20   # larger than any video we write: only the first frame is intra-coded


def write_video(path: Path, frames_bgr: Iterable[np.ndarray], *, fps: int = 25, gop: int | None = 12,
                codec: str = "mpeg4", bit_rate: int = 900_000) -> int:
    """Write BGR uint8 frames (all the same size) to `path` (AVI container); return the frame count.

    `codec` is "mpeg4" (MPEG-4 Part 2, as in UCF101's XviD files and CoViAR's re-encoding) or
    "libx264" (H.264). `gop=None` writes one I-frame per video.
    """
    if codec not in CODECS:
        raise ValueError(f"{path}: unsupported codec {codec!r}; expected one of {CODECS}")
    if gop is not None and gop < 1:
        raise ValueError(f"{path}: gop must be >= 1 (got {gop})")
    g = SINGLE_GOP if gop is None else gop
    n = 0
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        cc = stream.codec_context
        cc.gop_size = g
        cc.thread_count = 1
        if codec == "mpeg4":
            cc.max_b_frames = 0
            cc.options = {"sc_threshold": "1000000000"}   # no extra I-frames at "scene cuts"
        else:
            cc.options = {"x264-params": f"keyint={g}:min-keyint={g}:scenecut=0:bframes=0",
                          "threads": "1", "preset": "veryfast"}
        for img in frames_bgr:
            if n == 0:
                stream.height, stream.width = img.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    if n == 0:
        raise ValueError(f"{path}: no frames to write")
    return n


def save_npz_deterministic(path: Path, **arrays: np.ndarray) -> None:
    """Like `np.savez_compressed` but byte-identical for identical arrays (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
