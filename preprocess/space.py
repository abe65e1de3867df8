"""Disk space for `csvr preprocess`: the store's size estimated from a sample of videos, checked against the
free space before anything is written, and a clear error when the disk fills during a run anyway."""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np

from csvr.contracts import NUM_JOINTS

log = logging.getLogger(__name__)

SAMPLE_VIDEOS = 32         # videos whose container headers are probed for their frame count
STAGING_FACTOR = 1.25      # staged parts of videos still waiting for their shards sit next to the store
NATIVE_GOP_GUESS = 12      # I-frames per frame for the native policy (the stream's own GOP is not probed)


class DiskSpaceError(OSError):
    """Not enough free space for the store (before the run), or the disk filled up during it."""

    def __str__(self) -> str:
        return str(self.strerror)


def human(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def probe_frames(path: Path) -> int | None:
    """Frames the container declares (or duration x rate), without decoding; None when unknown."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = int(s.frames or 0)
            if not n and c.duration and s.average_rate:
                n = int(round(c.duration / 1_000_000 * float(s.average_rate)))
            return n or None
    except Exception:  # an unreadable file is the pipeline's to record; it adds nothing here
        return None


def codec_ratio(path: Path, frame_size: tuple[int, int], codec: str, frames: int = 16,
                jpeg_quality: int = 90) -> float:
    """Compressed / raw bytes of `frames` decoded, resized frames of `path` under the store's frame codec."""
    if codec == "none":
        return 1.0
    from csvr.preprocess.video import VideoStream

    if codec == "jpeg":
        from csvr.codecs import encode_jpeg

        encode = lambda f: encode_jpeg(f, jpeg_quality)  # noqa: E731
    else:
        from numcodecs import Blosc

        cname, shuffle = {"lz4": ("lz4", Blosc.NOSHUFFLE), "zstd": ("zstd", Blosc.BITSHUFFLE),
                          "lz4-bitshuffle": ("lz4", Blosc.BITSHUFFLE)}[codec]
        encode = Blosc(cname=cname, clevel=3 if cname == "zstd" else 5, shuffle=shuffle).encode
    try:
        chunk = next(iter(VideoStream(path, frame_size, chunk=frames).chunks()))
    except Exception:
        return 1.0
    raw = chunk.frames.nbytes
    return sum(len(encode(f)) for f in chunk.frames) / raw if raw else 1.0


def estimate_store(paths: list[Path], *, frame_size: tuple[int, int], frame_step: int, iframe_policy: str,
                   gop: int, max_people: int, codec: str, jpeg_quality: int = 90, sample: int = SAMPLE_VIDEOS,
                   seed: int = 0) -> dict:
    """The store's expected size from the frame counts of a seeded sample of `paths` (container headers)."""
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), size=min(sample, len(paths)), replace=False).tolist()) if paths else []
    counts = [n for n in (probe_frames(paths[i]) for i in pick) if n]
    per_video = float(np.mean(counts)) if counts else 0.0
    source = per_video * len(paths)
    stored = math.ceil(source / frame_step)
    iframes = math.ceil(source / (gop if iframe_policy == "reencode" else NATIVE_GOP_GUESS))
    h, w = frame_size
    ratio = codec_ratio(paths[pick[0]], frame_size, codec, jpeg_quality=jpeg_quality) if pick and codec != "none" else 1.0
    frame_bytes = h * w * 3 * ratio
    pose_bytes = max_people * (NUM_JOINTS * 3 + 5) * 2 + 1     # float16 keypoints + boxes, int8 main actor
    store = stored * (frame_bytes + pose_bytes) + iframes * (frame_bytes + 9)
    return {"videos": len(paths), "sampled": len(pick), "probed": len(counts), "frames_per_video": per_video,
            "stored_frames": stored, "iframes": iframes, "codec": codec, "codec_ratio": round(ratio, 4),
            "bytes_per_frame": round(frame_bytes + pose_bytes, 1), "store_bytes": int(store),
            "peak_bytes": int(store * STAGING_FACTOR)}


def _existing_dir(path: Path) -> Path:
    p = path.resolve()
    while not p.exists():
        p = p.parent
    return p


def disk_usage(path: Path) -> int:
    """Bytes of the files under `path` (links not followed; files that vanish meanwhile are skipped)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def check_free_space(out: str, estimate: dict) -> dict:
    """Raise `DiskSpaceError` when the target lacks the space `estimate` says the run still needs
    (what an interrupted run already wrote counts as done). Remote (fsspec) targets are not checked."""
    if "://" in out and not out.startswith("file://"):
        log.info("store %s: remote target, free space not checked", out)
        return {"checked": False}
    path = Path(out.removeprefix("file://"))
    where = _existing_dir(path)
    free = shutil.disk_usage(where).free
    written = disk_usage(path) if path.exists() else 0
    need = max(0, estimate["peak_bytes"] - written)
    info = {"checked": True, "free_bytes": int(free), "written_bytes": int(written), "need_bytes": int(need),
            "filesystem_of": str(where)}
    if need > free:
        raise DiskSpaceError(
            errno.ENOSPC,
            f"store {out}: needs about {human(need)} more ({human(estimate['store_bytes'])} estimated from "
            f"{estimate['probed']} of {estimate['videos']} videos: {estimate['stored_frames']} frames x "
            f"{estimate['bytes_per_frame']:.0f} B + {estimate['iframes']} I-frames, x{STAGING_FACTOR} while "
            f"staging{', minus ' + human(written) + ' already written' if written else ''}), but only "
            f"{human(free)} is free on the file system of {where}. Free space, choose another --out, store less "
            "(--frame-step, --codec), or pass --no-space-check to start anyway")
    return info


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(out: str, exc: BaseException) -> DiskSpaceError:
    """The error a run that filled the disk stops with: the store, the free space, and how to go on."""
    try:
        free = human(shutil.disk_usage(_existing_dir(Path(out.removeprefix("file://")))).free)
    except OSError:
        free = "unknown"
    return DiskSpaceError(
        errno.ENOSPC,
        f"store {out}: the disk filled up while writing ({exc}); {free} free now. What was written is kept: "
        "finished videos and shards have their done markers, and a half-written one is redone. Free space and "
        "rerun the same command to resume")
