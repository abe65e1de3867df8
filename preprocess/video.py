"""In-process video decoding with PyAV: full decode + resize, I-frame extraction, MPEG-4 re-encode.

Everything here works on one file and returns NumPy arrays; nothing spawns a process. Positions of
frames found with ``skip_frame`` are taken from ``frame.pts`` (mapped onto the full decode's pts list),
never from a loop counter (see ENVIRONMENT.md).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class VideoError(Exception):
    """A file that cannot be used as a video; the message is the reason recorded in the store."""


# A decode that yields fewer frames than the container declares: at most this many missing is normal (AVI
# and MKV files often declare one frame more than they hold: 6 of 41 clean real clips, ../shared); more is
# `degraded`; below MIN_DECODED_FRACTION of the declared count the file is `failed` ("truncated").
SHORTFALL_OK = 1
MIN_DECODED_FRACTION = 0.95


@dataclass
class DecodedVideo:
    """Result of :func:`decode_video` for one file."""

    frames: np.ndarray  # (N, H, W, 3) uint8 at the stored size, N = ceil(source_frames / frame_step)
    pose_frames: np.ndarray  # (N, h, w, 3) uint8 at source resolution capped for the pose model
    source_indices: np.ndarray  # (N,) int32 index in the source stream of each stored frame
    pts: list[int | None]  # pts of every decoded source frame, in decode (display) order
    fps: float
    width: int
    height: int
    source_frames: int
    codec: str = ""
    extra: dict = field(default_factory=dict)
    damage: dict = field(default_factory=dict)  # what went wrong but left a usable video (see `degraded_reason`)

    def degraded_reason(self) -> str:
        """"" for a clean decode, else the reason the video is stored as `degraded` (with counts)."""
        return self.reason_of(self.damage, self.source_frames)

    @staticmethod
    def reason_of(d: dict, decoded: int) -> str:
        parts = []
        if d.get("short", 0) > SHORTFALL_OK:
            parts.append(f"decoded {decoded} of the {d['declared']} frames the container declares "
                         f"({d['short']} missing)")
        if d.get("corrupt_frames"):
            parts.append(f"{d['corrupt_frames']} frame(s) flagged corrupt by the decoder")
        if d.get("decoder_errors"):
            parts.append(f"{d['decoder_errors']} decoder error message(s)")
        return "; ".join(parts)


@dataclass
class IFrames:
    """Intra-coded frames of a stream, at the stored size."""

    images: np.ndarray  # (I, H, W, 3) uint8
    source_index: np.ndarray  # (I,) int32
    pict_type: np.ndarray  # (I,) uint8 (av PictureType value, 1 = I)


def _open(path: Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise VideoError("zero-byte file")
    try:
        container = av.open(str(path))
    except Exception as exc:  # av raises many InvalidDataError subclasses
        raise VideoError(f"cannot open as a container: {type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoError(f"no video stream (streams: {', '.join(kinds)})")
    return container


def pose_size(height: int, width: int, cap: int) -> tuple[int, int]:
    """Source size scaled so the longest side is at most ``cap`` (even dims, never upscaled)."""
    scale = min(1.0, cap / max(height, width))
    h = max(2, int(round(height * scale / 2)) * 2)
    w = max(2, int(round(width * scale / 2)) * 2)
    return h, w


@dataclass
class FrameChunk:
    """Up to `chunk` consecutive stored frames of a :class:`VideoStream`, with their pose-model frames and,
    with ``collect_iframes``, the intra-coded frames met while decoding them."""

    frames: np.ndarray          # (k, H, W, 3) uint8 at the stored size
    pose_frames: np.ndarray     # (k, h, w, 3) uint8 for the pose model
    source_indices: np.ndarray  # (k,) int32
    iframes: IFrames | None = None


class VideoStream:
    """Decode ``path`` in bounded chunks: ``chunks()`` yields :class:`FrameChunk` of at most ``chunk``
    stored frames, so memory does not grow with the video's length (docs/store.md, "Memory").

    Keeps every ``frame_step``-th frame resized to ``frame_size`` (H, W) and, for pose estimation, at
    source resolution capped to ``pose_cap``. With ``collect_iframes`` each chunk carries the intra-coded
    frames met while decoding it (decoder ``pict_type`` I: the ``native`` policy at no extra decoding
    cost). With ``reencode_gop`` every decoded frame is also fed, as it is decoded, to an MPEG-4 Part 2
    encoder with that GOP writing to the file ``reencode_to`` (or to memory: ``reencoded``). With
    ``keep_source`` every source frame is kept as yuv420p planes in ``source`` (grows with the video;
    for tests and the in-memory re-encode). After ``chunks()`` is exhausted, the attributes fps, width,
    height, source_frames, pts, codec and damage describe the whole decode. Raises :class:`VideoError`
    with the reason for unusable files.
    """

    def __init__(self, path: Path, frame_size: tuple[int, int] = (128, 171), frame_step: int = 1,
                 pose_cap: int = 320, *, chunk: int = 256, collect_iframes: bool = False,
                 reencode_gop: int | None = None, reencode_to: str | Path | None = None,
                 keep_source: bool = False) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.path, self.frame_size, self.frame_step, self.pose_cap = Path(path), frame_size, frame_step, pose_cap
        self.chunk, self.collect_iframes, self.keep_source = chunk, collect_iframes, keep_source
        self.reencode_gop, self.reencode_to = reencode_gop, reencode_to
        self.fps, self.width, self.height, self.source_frames, self.codec = 0.0, 0, 0, 0, ""
        self.pts: list[int | None] = []
        self.damage: dict = {}
        self.source: list[np.ndarray] = []
        self.reencoded: bytes | None = None

    def chunks(self) -> Iterator[FrameChunk]:
        import av
        import av.logging

        H, W = self.frame_size
        step = self.frame_step
        container = _open(self.path)
        # FFmpeg's own error messages (e.g. "Error at MB: 282" for a damaged MPEG-4 packet) are the decoder's
        # only report of concealed damage; capture them (local=False: the decoder threads log too)
        av.logging.set_level(av.logging.ERROR)
        capture = av.logging.Capture(local=False)
        capture.__enter__()
        writer: Mpeg4Writer | None = None
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            cc = stream.codec_context
            width, height = int(cc.width or 0), int(cc.height or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            ph, pw = pose_size(height, width, self.pose_cap) if width and height else (0, 0)
            intra = int(av.video.frame.PictureType.I)
            pending: dict[str, list] = {"f": [], "p": [], "s": [], "ii": [], "ix": [], "it": []}

            def flush() -> FrameChunk:
                ifr = None
                if self.collect_iframes:
                    ifr = IFrames(np.stack(pending["ii"]) if pending["ii"] else np.zeros((0, H, W, 3), np.uint8),
                                  np.asarray(pending["ix"], dtype=np.int32), np.asarray(pending["it"], dtype=np.uint8))
                out = FrameChunk(np.stack(pending["f"]), np.stack(pending["p"]),
                                 np.asarray(pending["s"], dtype=np.int32), ifr)
                for v in pending.values():
                    v.clear()
                return out

            i = corrupt = 0
            try:
                for frame in container.decode(stream):
                    if self.reencode_gop is not None:
                        if writer is None:
                            writer = Mpeg4Writer(frame.width, frame.height, self.reencode_gop, fps or 25.0,
                                                 out=self.reencode_to)
                        writer.add(frame, i)
                    if i == 0 and not (width and height):
                        width, height = frame.width, frame.height
                        ph, pw = pose_size(height, width, self.pose_cap)
                    self.pts.append(frame.pts)
                    corrupt += bool(frame.is_corrupt)
                    if self.collect_iframes and int(frame.pict_type) == intra:
                        pending["ii"].append(frame.to_ndarray(width=W, height=H, format="rgb24"))
                        pending["ix"].append(i)
                        pending["it"].append(intra)
                    if i % step == 0:
                        pending["f"].append(pending["ii"][-1] if pending["ix"] and pending["ix"][-1] == i
                                            else frame.to_ndarray(width=W, height=H, format="rgb24"))
                        pending["p"].append(frame.to_ndarray(width=pw, height=ph, format="rgb24"))
                        pending["s"].append(i)
                    if self.keep_source:
                        self.source.append(frame.to_ndarray(format="yuv420p"))
                    i += 1
                    if len(pending["f"]) == self.chunk:
                        yield flush()
            except av.FFmpegError as exc:
                if i == 0:
                    raise VideoError(f"decode failed before the first frame: {exc}") from exc
                raise VideoError(f"decode failed after {i} frames (truncated or corrupt): {exc}") from exc
            if i == 0:
                raise VideoError("zero decodable frames")
            expected = int(stream.frames or 0)
            if not expected and container.duration and fps:
                expected = int(round(container.duration / 1_000_000 * fps))
            if expected and i < MIN_DECODED_FRACTION * expected - SHORTFALL_OK:
                raise VideoError(f"truncated: decoded {i} of the {expected} frames the container declares")
            self.damage = {"declared": expected, "short": max(0, expected - i) if expected else 0,
                           "corrupt_frames": corrupt,
                           "decoder_errors": sum(1 for level, _, _ in capture.logs if level <= av.logging.ERROR)}
            self.fps, self.width, self.height, self.source_frames, self.codec = max(fps, 0.0), width, height, i, cc.name
            if writer is not None:
                self.reencoded = writer.finish()
                writer = None
            if pending["f"] or pending["ii"]:
                yield flush()
        finally:
            if writer is not None:
                writer.close()
            capture.__exit__(None, None, None)
            av.logging.set_level(None)
            container.close()

    def degraded_reason(self) -> str:
        return DecodedVideo.reason_of(self.damage, self.source_frames)


def decode_video(
    path: Path,
    frame_size: tuple[int, int] = (128, 171),
    frame_step: int = 1,
    pose_cap: int = 320,
    keep_source: bool = False,
    collect_iframes: bool = False,
    reencode_gop: int | None = None,
) -> DecodedVideo:
    """The whole video at once (:class:`VideoStream` collected; memory grows with its length): every
    ``frame_step``-th frame at ``frame_size`` and for the pose model, with ``keep_source`` the source
    frames in ``extra['source']``, with ``collect_iframes`` the stream's intra frames in
    ``extra['iframes']``, with ``reencode_gop`` the in-memory MPEG-4 re-encode in ``extra['reencoded']``
    (tests/preprocess_testdata.py reads its I-frames). Raises :class:`VideoError` with the reason for unusable files."""
    vs = VideoStream(path, frame_size, frame_step, pose_cap, chunk=1 << 30, collect_iframes=collect_iframes,
                     reencode_gop=reencode_gop, keep_source=keep_source)
    parts = list(vs.chunks())
    extra: dict = {}
    if keep_source:
        extra["source"] = vs.source
    if vs.reencoded is not None:
        extra["reencoded"] = vs.reencoded
    if collect_iframes:
        extra["iframes"] = concat_iframes([c.iframes for c in parts], frame_size)
    return DecodedVideo(
        frames=np.concatenate([c.frames for c in parts]),
        pose_frames=np.concatenate([c.pose_frames for c in parts]),
        source_indices=np.concatenate([c.source_indices for c in parts]),
        pts=vs.pts, fps=vs.fps, width=vs.width, height=vs.height, source_frames=vs.source_frames,
        codec=vs.codec, extra=extra, damage=vs.damage)


def concat_iframes(parts: list[IFrames | None], frame_size: tuple[int, int]) -> IFrames:
    H, W = frame_size
    parts = [p for p in parts if p is not None and len(p.source_index)]
    if not parts:
        return IFrames(np.zeros((0, H, W, 3), np.uint8), np.zeros(0, np.int32), np.zeros(0, np.uint8))
    return IFrames(np.concatenate([p.images for p in parts]), np.concatenate([p.source_index for p in parts]),
                   np.concatenate([p.pict_type for p in parts]))


def _pts_to_index(pts_list: list[int | None]) -> dict[int, int]:
    return {p: k for k, p in enumerate(pts_list) if p is not None}


def _read_ue(data: bytes, bit: int) -> tuple[int, int]:
    """Exp-Golomb ue(v) at bit offset ``bit`` of ``data`` -> (value, next bit offset)."""
    zeros = 0
    while bit < len(data) * 8 and not (data[bit // 8] >> (7 - bit % 8)) & 1:
        zeros += 1
        bit += 1
    bit += 1
    value = 0
    for _ in range(zeros):
        if bit >= len(data) * 8:
            return -1, bit
        value = (value << 1) | ((data[bit // 8] >> (7 - bit % 8)) & 1)
        bit += 1
    return (1 << zeros) - 1 + value, bit


def _h264_nals(data: bytes) -> list[bytes]:
    """NAL units of an H.264 packet, Annex-B (start codes) or AVCC (4-byte lengths)."""
    if data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01":
        parts = data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
        return [p for p in parts if p]
    nals, k = [], 0
    while k + 4 <= len(data):
        n = int.from_bytes(data[k:k + 4], "big")
        if n <= 0 or k + 4 + n > len(data):
            return [data]  # not AVCC after all: let the decoder decide
        nals.append(data[k + 4:k + 4 + n])
        k += 4 + n
    return nals


def may_be_intra(codec: str, data: bytes, is_keyframe: bool) -> bool:
    """Cheap bitstream test whether a packet can hold an intra-coded picture (never a false "no").

    MPEG-4 Part 2: the VOP header's coding type; H.264: IDR NAL or an I/SI slice type. Other codecs:
    always True (the decoder's ``skip_frame=NONINTRA`` then does the filtering).
    """
    if is_keyframe:
        return True
    if codec == "mpeg4":
        k = data.find(b"\x00\x00\x01\xb6")
        return k < 0 or k + 4 >= len(data) or (data[k + 4] >> 6) == 0
    if codec == "h264":
        for nal in _h264_nals(data):
            kind = nal[0] & 0x1F
            if kind == 5:
                return True
            if kind == 1:
                _, bit = _read_ue(nal[1:8], 0)  # first_mb_in_slice
                slice_type, _ = _read_ue(nal[1:8], bit)
                if slice_type < 0 or slice_type % 5 in (2, 4):
                    return True
        return False
    return True


def _intra_frames(container, frame_size: tuple[int, int], pts_index: dict[int, int] | None) -> IFrames:
    """All intra frames of ``container`` at once (see :func:`iter_intra_frames`), in display order."""
    out = concat_iframes(list(iter_intra_frames(container, frame_size, pts_index, chunk=1 << 30)), frame_size)
    order = np.argsort(out.source_index, kind="stable")
    return IFrames(out.images[order], out.source_index[order], out.pict_type[order])


def iter_intra_frames(container, frame_size: tuple[int, int], pts_index: dict[int, int] | None,
                      chunk: int = 256) -> Iterator[IFrames]:
    """Decode only intra frames, ``chunk`` at a time, in decode order: packets are pre-filtered by
    :func:`may_be_intra` and the decoder runs with ``skip_frame=NONINTRA``; a frame is kept when its
    ``pict_type`` is I."""
    import av

    H, W = frame_size
    stream = container.streams.video[0]
    cc = stream.codec_context
    cc.skip_frame = "NONINTRA"
    codec = cc.name
    images, idx, ptype = [], [], []
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    start = stream.start_time or 0
    I = int(av.video.frame.PictureType.I)

    def keep(frame) -> None:
        if int(frame.pict_type) != I:
            return  # some decoders pass through non-intra frames
        if pts_index is not None and frame.pts in pts_index:
            k = pts_index[frame.pts]
        elif frame.pts is not None and rate and tb:
            k = int(round(float((frame.pts - start) * tb * rate)))
        else:
            raise VideoError("I-frame without pts: cannot place it")
        images.append(frame.to_ndarray(width=W, height=H, format="rgb24"))
        idx.append(k)
        ptype.append(int(frame.pict_type))

    def flush() -> IFrames:
        out = IFrames(np.stack(images), np.asarray(idx, dtype=np.int32), np.asarray(ptype, dtype=np.uint8))
        images.clear(), idx.clear(), ptype.clear()
        return out

    found = 0
    try:
        for packet in container.demux(stream):
            if packet.size and not may_be_intra(codec, bytes(packet), packet.is_keyframe):
                continue
            for frame in cc.decode(packet):
                keep(frame)
            if len(images) >= chunk:
                found += len(images)
                yield flush()
    except av.FFmpegError as exc:
        if not (found or images):
            raise VideoError(f"I-frame decode failed: {exc}") from exc
        log.debug("I-frame decode stopped early: %s", exc)
    if images:
        yield flush()


def native_iframes(path: Path, frame_size: tuple[int, int] = (128, 171),
                   pts: list[int | None] | None = None) -> IFrames:
    """The stream's own intra-coded frames, positioned from their pts (onto ``pts`` when given)."""
    container = _open(path)
    try:
        return _intra_frames(container, frame_size, _pts_to_index(pts) if pts is not None else None)
    finally:
        container.close()


class Mpeg4Writer:
    """Streaming MPEG-4 Part 2 (AVI) encoder with a fixed GOP and no scene-cut I-frames, into memory or,
    with ``out``, into that file (so a long video's re-encode does not stay in memory)."""

    def __init__(self, width: int, height: int, gop: int, fps: float = 25.0, qscale: int = 4,
                 out: str | Path | None = None):
        import av
        from fractions import Fraction

        self.size = (width - width % 2, height - height % 2)
        self.buf = io.BytesIO() if out is None else None
        self.out = av.open(self.buf if out is None else str(out), mode="w", format="avi")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        st = self.out.add_stream("mpeg4", rate=rate)
        st.width, st.height, st.pix_fmt = self.size[0], self.size[1], "yuv420p"
        st.codec_context.gop_size = gop
        st.codec_context.options = {"sc_threshold": "1000000000", "qscale": str(qscale), "bf": "0"}
        st.codec_context.thread_count = 1
        self.stream = st
        self.time_base = 1 / rate  # pts = frame index

    def add(self, frame, index: int) -> None:
        """Encode one decoded ``av.VideoFrame`` as frame ``index`` (its source picture type is ignored)."""
        import av

        w, h = self.size
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (w, h):
            frame = frame.reformat(width=w, height=h, format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.NONE  # the source's I/P/B choice must not leak
        frame.pts = index
        frame.time_base = self.time_base
        for pkt in self.stream.encode(frame):
            self.out.mux(pkt)

    def finish(self) -> bytes | None:
        """Flush and close; the AVI bytes when written to memory, else None (they are in the file)."""
        for pkt in self.stream.encode(None):
            self.out.mux(pkt)
        self.out.close()
        return self.buf.getvalue() if self.buf is not None else None

    def close(self) -> None:
        self.out.close()


def full_decode_count(path: Path) -> int:
    """Decode every frame to RGB (benchmark baseline); returns the count."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
        return n
    finally:
        container.close()
