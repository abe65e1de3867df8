"""Tiny test videos (PyAV) in the synthetic dataset layout, ground-truth joints and bad files."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from csvr.data_manifests.manifest import Manifest, VideoEntry
from csvr.preprocess.video import DecodedVideo, IFrames, _intra_frames


def write_video(path: Path, frames: int = 30, size: tuple[int, int] = (64, 48), gop: int = 10,
                seed: int = 0, codec: str = "mpeg4") -> np.ndarray:
    """A moving bright square on a noisy background; returns the square centres (T, 2) in pixels."""
    w, h = size
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    centres = np.zeros((frames, 2), np.float32)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        s.codec_context.options = (
            {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"} if codec == "libx264"
            else {"sc_threshold": "1000000000", "bf": "0"})
        bg = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        for t in range(frames):
            img = bg.copy()
            cx = int(8 + (w - 16) * t / max(frames - 1, 1))
            cy = h // 2
            img[cy - 6:cy + 6, cx - 6:cx + 6] = (230, 200, 40)
            centres[t] = (cx, cy)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = t
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return centres


def write_joints(root: Path, cls: str, stem: str, centres: np.ndarray) -> None:
    """Ground-truth joints next to the dataset: a 'person' whose joints surround the square."""
    t = len(centres)
    offs = np.linspace(-5, 5, 17, dtype=np.float32)
    joints = np.stack([centres[:, None, 0] + offs[None], centres[:, None, 1] + offs[None] / 2], -1)
    visible = np.ones((t, 17), bool)
    visible[::7, 3] = False  # a few missing joints
    p = root / "joints" / cls / f"{stem}.npz"
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, joints=joints.astype(np.float32), visible=visible)


def make_dataset(root: Path, classes: tuple[str, ...] = ("Alpha", "Beta"), per_class: int = 2,
                 frames: int = 30, size: tuple[int, int] = (64, 48)) -> Manifest:
    """A tiny UCF-style dataset with joints, and its manifest."""
    videos = []
    for label, cls in enumerate(classes):
        for g in range(per_class):
            stem = f"v_{cls}_g{g + 1:02d}_c01"
            rel = f"UCF-101/{cls}/{stem}.avi"
            centres = write_video(root / rel, frames=frames + 3 * g, size=size, seed=label * 10 + g)
            write_joints(root, cls, stem, centres)
            videos.append(VideoEntry(rel, label, cls, {1: "train" if g else "test"}))
    return Manifest("synthetic", root, list(classes), videos)


def add_bad_files(root: Path, manifest: Manifest) -> tuple[dict[str, str], Manifest]:
    """Add truncated, zero-byte, text, audio-only and zero-frame files; returns path -> expected reason part."""
    cls = manifest.classes[0]
    d = root / "UCF-101" / cls
    good = root / manifest.videos[0].path
    bad = {}
    # truncated: the first 40% of a good file
    data = good.read_bytes()
    (d / "v_bad_truncated.avi").write_bytes(data[: int(len(data) * 0.7)])
    bad["truncated"] = "truncated"
    (d / "v_bad_zero.avi").write_bytes(b"")
    bad["zero"] = "zero-byte"
    (d / "v_bad_text.avi").write_text("this is not a video\n" * 20)
    bad["text"] = "cannot open"
    with av.open(str(d / "v_bad_audio.avi"), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        fr.sample_rate = 8000
        for p in s.encode(fr):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    bad["audio"] = "no video stream"
    with av.open(str(d / "v_bad_empty.avi"), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    bad["empty"] = "zero decodable frames"
    entries = list(manifest.videos)
    for name in bad:
        entries.append(VideoEntry(f"UCF-101/{cls}/v_bad_{name}.avi", 0, cls, {1: "train"}))
    return bad, Manifest(manifest.dataset, root, list(manifest.classes), entries)


# reference implementations for tests: the whole-video (non-streaming) MPEG-4 re-encode
def reencode_mpeg4(source_yuv: list[np.ndarray], width: int, height: int, gop: int,
                   fps: float = 25.0, qscale: int = 4) -> bytes:
    """Re-encode decoded frames (yuv420p planes) to MPEG-4 Part 2 in memory with a fixed GOP.

    Scene-cut detection is off, so I-frames sit exactly at multiples of ``gop`` (the CoViAR recipe).
    """
    w2, h2 = width - width % 2, height - height % 2
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="avi")
    try:
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        st = out.add_stream("mpeg4", rate=rate)
        st.width, st.height, st.pix_fmt = w2, h2, "yuv420p"
        st.codec_context.gop_size = gop
        st.codec_context.options = {"sc_threshold": "1000000000", "qscale": str(qscale), "bf": "0"}
        st.codec_context.thread_count = 1
        for k, yuv in enumerate(source_yuv):
            fr = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            if (fr.width, fr.height) != (w2, h2):
                fr = fr.reformat(width=w2, height=h2)
            fr.pts = k
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    finally:
        out.close()
    return buf.getvalue()


def reencoded_iframes(decoded: DecodedVideo, gop: int, frame_size: tuple[int, int] = (128, 171)) -> IFrames:
    """I-frames of an in-process MPEG-4 Part 2 re-encode (GOP ``gop``) of an already decoded video."""
    data = decoded.extra.get("reencoded")
    if data is None:
        source = decoded.extra.get("source")
        if source is None:
            raise ValueError("decode_video(..., reencode_gop=gop) or keep_source=True is required "
                             "for the reencode policy")
        data = reencode_mpeg4(source, decoded.width, decoded.height, gop, decoded.fps or 25.0)
    container = av.open(io.BytesIO(data), format="avi")
    try:
        # pts of the re-encode are the source frame indices (set above)
        return _intra_frames(container, frame_size, {k: k for k in range(decoded.source_frames)})
    finally:
        container.close()
